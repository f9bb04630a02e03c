"""Start a real TensorBoard on 127.0.0.1 for a log directory (a free port unless one is given)."""

from __future__ import annotations

import collections
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

# Keep every step's diagram, histogram and table: by default TensorBoard keeps a sample of 10 images and 10 texts
# per tag.
# (0 does not mean "all" here: the plugins then return no samples at all.)
SAMPLES = "images=100000,histograms=100000,scalars=100000,text=100000"
STDERR_LINES = 50  # TensorBoard's last stderr lines kept, for the message if it exits


def view_hint(logdir: Path) -> str:
    """The command that opens `logdir` in TensorBoard, as the user can type it now: the tensorboard installed
    beside this Python (`.venv/bin/tensorboard` right after the Quickstart, whose venv is not activated) unless
    that one is already first on PATH."""
    beside = Path(sys.executable).parent / "tensorboard"
    command = "tensorboard"
    if beside.exists() and shutil.which("tensorboard") != str(beside):
        try:
            command = str(beside.relative_to(Path.cwd()))
        except ValueError:
            command = str(beside)
    return f"{command} --logdir {logdir} --samples_per_plugin images=100000,text=100000"


def port_is_free(port: int) -> bool:
    """Can TensorBoard listen on 127.0.0.1:port? Asked before training, so a taken port costs no run."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensorboard_command(logdir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
            "--port", str(port), "--samples_per_plugin", SAMPLES, "--load_fast", "false", "--reload_interval", "2"]


def start_tensorboard(logdir: Path, port: int | None = None, timeout: float = 60, token: str | None = None,
                      announce: bool = True) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until it answers; returns the process and its URL.

    The Lesson tab's "+ run" token (lesson/board/new_run.py) is chosen here, handed to the server in its
    environment (which other local users cannot read; never on the command line, which they can) and kept as
    `proc.lesson_token`; with `announce`, the address that carries it (after '#') is printed on stderr, for the
    user who started the server alone."""
    port = port or free_port()
    token = token or secrets.token_urlsafe(24)
    env = {**os.environ, "NN_LESSON_TOKEN": token}
    proc = subprocess.Popen(tensorboard_command(logdir, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    proc.lesson_token = token
    # Read its stderr for as long as it runs, keeping the last lines for an error: a pipe nobody reads fills
    # (64 KiB) and then TensorBoard stops at its next warning.
    proc.stderr_tail = tail = collections.deque(maxlen=STDERR_LINES)
    threading.Thread(target=_drain, args=(proc.stderr, tail), daemon=True, name="tensorboard-stderr").start()
    url = f"http://127.0.0.1:{port}/"  # callers add "#lesson" to open on the Lesson tab
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.wait()
            time.sleep(0.1)  # the reader thread takes the last lines
            last = [line for line in tail if line.strip()][-1:]
            raise RuntimeError(f"tensorboard exited with code {proc.returncode}"
                               + (f": {last[0].decode(errors='replace').strip()}" if last else ""))
        try:
            with urllib.request.urlopen(url + "data/runs", timeout=2):
                if announce:
                    print(f"nn-lesson: to train runs from the Lesson tab (\"+ run\"), open {token_address(url, token)} "
                          "once in your browser; keep that address to yourself", file=sys.stderr, flush=True)
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"tensorboard did not answer on {url} within {timeout:.0f} s")


def _drain(stream, tail: collections.deque) -> None:
    for line in iter(stream.readline, b""):
        tail.append(line)
    stream.close()


def token_address(url: str, token: str) -> str:
    """The Lesson tab's address that hands the browser the "+ run" token (after '#': never sent to a server)."""
    return f"{url}#lesson&token={token}"
