"""Stopping a run by signal: SIGINT (Ctrl-C) and SIGTERM (what schedulers and `docker stop` send) stop
training at once, but never the writing of a run, which finishes first and then exits 128 + signal."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM. A KeyboardInterrupt, so training code that keeps
    what was recorded on Ctrl-C does the same on SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(err: BaseException) -> int:
    return 128 + getattr(err, "signum", signal.SIGINT)


def _raise(signum: int, frame) -> None:
    raise Stopped(signum)


def exit_at_once_on_signals() -> None:
    """Before a run is claimed there is nothing to keep: SIGINT and SIGTERM end the process with one line.
    (An exception raised while modules are still being imported can be swallowed by import machinery.)"""
    def leave(signum: int, frame) -> None:
        os.write(2, f"nn-lesson: stopped by {signal.Signals(signum).name}; nothing written\n".encode())
        os._exit(128 + signum)
    for s in SIGNALS:
        signal.signal(s, leave)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise Stopped from now on (also when started with SIGINT ignored, as a background job)."""
    for s in SIGNALS:
        signal.signal(s, _raise)


@contextlib.contextmanager
def stopping_by_signal() -> Iterator[None]:
    """stop_on_signals() for the block; the handlers found before are put back after it."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    stop_on_signals()
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


class Deferred:
    signum: int | None = None


@contextlib.contextmanager
def signals_deferred(then_raise: bool = True) -> Iterator[Deferred]:
    """Inside the block a signal is only noted (`.signum`); the block runs to its end, then signals raise again.
    With then_raise=False they stay noted after it: a process already stopping by a signal ends with that
    signal's exit code, whether a second signal comes while it writes, after, or not at all."""
    seen = Deferred()

    def note(signum: int, frame) -> None:
        seen.signum = seen.signum or signum
    for s in SIGNALS:
        signal.signal(s, note)
    try:
        yield seen
    finally:
        if then_raise:
            stop_on_signals()
