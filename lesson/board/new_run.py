"""The Lesson tab's "new run": a teacher turns a knob and a real run appears in every dashboard.

The run is trained by the `nn-lesson` command itself, in a child process: the same argument checks, the same
Recorder, the same run-folder rules (claimed, written aside, moved into place) as at the terminal, and a
stuck or huge run cannot take the TensorBoard server down with it. The route adds bounds of its own, because
a click must not start hours of work: at most MAX_EPOCHS epochs and MAX_SECONDS of training.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from nn_lesson.lesson.cli import learning_rate, positive_int, seed
from nn_lesson.lesson.run.settings import INITS, LOSSES, LessonConfig
from nn_lesson.models import ACTIVATIONS

MAX_EPOCHS = 500       # 3,000 steps on the lesson's six students: a few seconds
MAX_BATCH = 64
MAX_SECONDS = 120


class NewRunRefused(Exception):
    """Settings or a logdir the route cannot train with; str() is the one-line reason, `status` the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(settings: dict, key: str, parse, default):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NewRunRefused(f"{key}: not a number: {str(value)[:40]!r}")
    try:
        return parse(str(value))
    except argparse.ArgumentTypeError as err:
        raise NewRunRefused(f"{key}: {err}") from None


def _choice(settings: dict, key: str, choices, default) -> str:
    value = settings.get(key, default)
    if value not in choices:
        raise NewRunRefused(f"{key}: must be one of {', '.join(choices)}, got {str(value)[:40]!r}")
    return value


def command_line(logdir: Path, settings: dict) -> list[str]:
    """The nn-lesson arguments for these settings, each checked by the CLI's own parsers and the bounds above."""
    if not isinstance(settings, dict):
        raise NewRunRefused("the request body must be a JSON object of settings")
    unknown = sorted(set(settings) - {"lr", "epochs", "batch_size", "seed", "init", "activation", "loss"})
    if unknown:
        raise NewRunRefused(f"unknown setting {unknown[0][:40]!r}; the knobs are lr, epochs, batch_size, seed, "
                            "init, activation, loss")
    d = LessonConfig()
    lr = _number(settings, "lr", learning_rate, d.lr)
    epochs = _number(settings, "epochs", positive_int, d.epochs)
    batch = _number(settings, "batch_size", positive_int, d.batch_size)
    if epochs > MAX_EPOCHS:
        raise NewRunRefused(f"epochs: at most {MAX_EPOCHS} from the tab (the terminal takes more), got {epochs}")
    if batch > MAX_BATCH:
        raise NewRunRefused(f"batch_size: at most {MAX_BATCH}, got {batch}")
    return [sys.executable, "-m", "nn_lesson", "--quiet", "--logdir", str(logdir),
            "--lr", repr(lr), "--epochs", str(epochs), "--batch-size", str(batch),
            "--seed", str(_number(settings, "seed", seed, d.seed)),
            "--init", _choice(settings, "init", INITS, d.init),
            "--activation", _choice(settings, "activation", ACTIVATIONS, d.activation),
            "--loss", _choice(settings, "loss", LOSSES, d.loss)]


def train_new_run(logdir: Path, settings: dict) -> dict:
    """Train and write one run under `logdir`; {"run": its name under the logdir, "steps": ...}."""
    args = command_line(logdir, settings)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=MAX_SECONDS)
    except subprocess.TimeoutExpired:  # the child was killed; its claim is cleaned up by the next run
        raise NewRunRefused(f"training took longer than {MAX_SECONDS} s and was stopped; try fewer epochs", 408) from None
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line[:5] in ("run: ", "snaps"))
    if "run" not in lines:  # nothing written: say why in the command's own words (its last line)
        reason = (done.stderr.strip().splitlines() or [f"nn-lesson exited with code {done.returncode}"])[-1]
        raise NewRunRefused(reason.removeprefix("nn-lesson: ").strip()[:300])
    folder = Path(lines["run"].strip())
    try:
        name = folder.resolve().relative_to(logdir.resolve()).as_posix()
    except ValueError:
        name = folder.name
    # Exit code 3: the run diverged and was written all the same (marked stopped), as at the terminal.
    return {"run": name, "exit_code": done.returncode}
