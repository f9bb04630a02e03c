"""Run folders: a new one per run, never an existing one unless asked, and never half-written.

Everything is written into a hidden sibling folder first and renamed into place at the end, so a
crash leaves `.<name>.partial-*` behind, never a half run under the real name.
"""

from __future__ import annotations

import os
import shutil
import secrets
import tempfile
import time
from pathlib import Path
from typing import Callable


class RunDirError(ValueError):
    """The log directory or run name cannot be used; str() says why in one line."""


def check_logdir(logdir: Path) -> None:
    """Refuse early (before training) a logdir that cannot hold runs. It is probed by creating and removing
    a folder in its nearest existing ancestor: permission bits alone say nothing when running as root, or
    on a read-only file system."""
    probe = logdir
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirError(f"log directory {logdir}: {probe} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nn-lesson-probe-", dir=probe))
    except OSError as err:
        raise RunDirError(f"log directory {logdir}: cannot create folders in {probe} ({err.strerror})") from None


def choose_run_dir(logdir: Path, name: str | None, default_name: str, overwrite: bool) -> Path:
    if name is not None:
        if not name or "/" in name or name.startswith("."):
            raise RunDirError(f"run name {name!r}: use a plain folder name (no '/', not starting with '.')")
        target = logdir / name
        if target.exists() and not overwrite:
            raise RunDirError(f"run {target} already exists; choose another --name or pass --overwrite")
        return target
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = logdir / f"{stamp}_{default_name}"
    n = 2
    while target.exists():
        target = logdir / f"{stamp}_{default_name}-{n}"
        n += 1
    return target


def write_run(target: Path, fill: Callable[[Path], None]) -> Path:
    """The one way a run folder is written: `fill` writes every file into a staging folder, which is then
    moved to `target`. A crash inside `fill` leaves no folder under the real name."""
    staging = staging_dir(target)
    fill(staging)
    return publish(staging, target)


def staging_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # exclusive; the umask gives the folder its mode, as for any folder
    return staging


def publish(staging: Path, target: Path) -> Path:
    """Move a finished staging folder to its final name, replacing an old run only after the new is complete."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(staging, target)
        shutil.rmtree(old)
    else:
        os.replace(staging, target)
    return target
