"""write_tensorboard: any SnapshotLog (your own model, recorded by the Recorder) as a TensorBoard run.

    with Recorder(model, opt) as rec:
        ...                                          # your loop
    write_tensorboard(rec.log, "runs/my-convnet", hparams={"lr": 0.01})

The run folder follows the CLI's rules: claimed before anything is written, written aside and moved into place
complete, an existing run never overwritten (a taken name is numbered, as the CLI numbers its default names). It holds the log's `snapshots.npz` (the Lesson tab
draws it as layer blocks, stepping like the lesson) and event files: the loss and lr per step, per-module
histograms of weights, gradients, updates and activations named by module path, the size and
update-to-weight ratio of each parameter, and an HParams row when hparams are given. Full and
statistics-only logs alike (a statistics log has the loss and the ratios).
"""

from __future__ import annotations

from pathlib import Path

import torch

from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.board.events import EventWriter
from nn_lesson.lesson.board.scalars import write_log, write_scalars
from nn_lesson.lesson.run.folder import check_name, claim_run, write_run
from nn_lesson.lesson.run.record import SNAPSHOT_FILE

FINAL_LOSS = "hparams/final loss"
STATISTICS_FILE = "statistics.npz"  # the statistics of every step, beside the full rows every k-th step


def write_tensorboard(log: SnapshotLog, run_dir: str | Path, hparams: dict[str, object] | None = None,
                      stats: SnapshotLog | None = None) -> Path:
    """Write `log` as the run folder `run_dir` (its parent is the logdir to open in TensorBoard), or as
    `run_dir`-2, -3, ... when that name is taken; returns the folder written. Refuses (RunDirError, a ValueError)
    a name that is not a plain folder name or a logdir that cannot be written. `stats`: the statistics of every
    step a Recorder kept beside full rows every k-th step (rec.stats_log): saved as statistics.npz, and the
    per-step scalars come from it (every step) while the histograms come from the full rows."""
    if not isinstance(log, SnapshotLog):
        raise TypeError(f"write_tensorboard: log must be a SnapshotLog (rec.log), not {type(log).__name__}")
    if len(log) == 0:
        raise ValueError("write_tensorboard: the log holds no steps (no optimizer step ran while recording); "
                         "nothing to write")
    run_dir = Path(run_dir)
    check_name(run_dir.name)
    # Numbered like the CLI's own run names when taken (my-run, my-run-2, ...): a script run twice keeps both.
    claim = claim_run(run_dir.parent, None, run_dir.name, overwrite=False)

    def fill(folder: Path) -> None:
        log.save(folder / SNAPSHOT_FILE)
        if stats is not None:
            stats.save(folder / STATISTICS_FILE)
        with EventWriter(folder) as events:
            if stats is None:
                write_log(events, log)
            else:
                write_log(events, stats)                               # loss and health, every step
                write_scalars(events, log, lesson_names=False, with_scalars=False)   # histograms, every k-th
            if hparams:
                _write_hparams(events, log, hparams)
    return write_run(claim, fill)


def _write_hparams(events: EventWriter, log: SnapshotLog, hparams: dict[str, object]) -> None:
    """One HParams row: the user's knobs (numbers, strings and booleans as TensorBoard takes them) and the
    final loss."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary
    knobs = {str(k): v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
    metrics = {FINAL_LOSS: float(log.loss[-1])} if log.has("loss") and len(log) and torch.isfinite(log.loss[-1]) else {}
    for summary in hparams_summary(knobs, metrics):
        events.add(summary)
    if metrics:
        events.step(int(log.step[-1]), scalars=metrics)
