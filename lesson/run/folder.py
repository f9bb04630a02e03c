"""Run folders: claimed before training, written aside, moved into place without replacing anything.

A run's name is claimed in a staging area beside the log directory (`runs` → `.runs.nn-lesson-staging/`),
outside the tree TensorBoard reads, by renaming a private folder that already holds its owner file onto
the name (exclusive: the rename fails when another process holds it). Every file is written
there; the finished folder is then renamed into the log directory. So two runs can never share a
folder, a crash never leaves a half run under a real name, and what a killed run left behind is
recognised by its owner's process id and removed by the next run.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Long enough for any name people type; short enough that staging names stay within NAME_MAX (255).
MAX_NAME = 200
OWNER_FILE = ".nn-lesson-owner"
PUBLISHING = ".nn-lesson-publishing"  # the name a staging folder is being published under (see publish)
CLAIMING = ".claiming-"  # a private folder being prepared: .claiming-<pid>-<random>


class RunDirError(ValueError):
    """The log directory or run name cannot be used; str() says why in one line."""


@dataclass(frozen=True)
class RunClaim:
    """A run name held by this process: `staging` is where its files go, `target` where they end up."""

    target: Path
    staging: Path
    overwrite: bool

    def release(self) -> None:
        """Give the name back without publishing (nothing of the run is kept)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def staging_area(logdir: Path) -> Path:
    logdir = logdir.absolute()
    return logdir.parent / f".{logdir.name}.nn-lesson-staging"


def check_name(name: str) -> None:
    bad = [c for c in name if c in "/\\" or not c.isprintable()]
    if not name or name.startswith(".") or bad or len(name) > MAX_NAME:
        raise RunDirError(f"run name {name!r}: use a plain folder name of at most {MAX_NAME} printable "
                          "characters, with no '/' or '\\', not starting with '.'")


def check_logdir(logdir: Path) -> None:
    """Refuse early (before training) a logdir that cannot hold runs. It is probed by creating and removing
    a folder in its nearest existing ancestor: permission bits alone say nothing when running as root, or
    on a read-only file system."""
    probe = logdir.absolute()
    while not probe.exists() and probe.parent != probe:
        if probe.is_symlink():  # exists() is False for a link to nowhere: mkdir would fail only after training
            raise RunDirError(f"log directory {logdir}: {probe} is a symbolic link to {os.readlink(probe)}, "
                              "which does not exist")
        probe = probe.parent
    if not probe.is_dir():
        raise RunDirError(f"log directory {logdir}: {probe} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nn-lesson-probe-", dir=probe))
    except OSError as err:
        raise RunDirError(f"log directory {logdir}: cannot create folders in {probe} ({err.strerror})") from None


def claim_run(logdir: Path, name: str | None, default_name: str, overwrite: bool) -> RunClaim:
    """Claim a new run folder under `logdir`: `name` exactly (refused if it exists, unless `overwrite`, or if
    another process is writing it), or `<default_name>[-N]`, the first that no run holds."""
    check_logdir(logdir)
    area = staging_area(logdir)
    try:
        area.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"log directory {logdir}: cannot create {area} ({err.strerror})") from None
    remove_stale(area, logdir)
    if name is not None:
        check_name(name)
        target = logdir / name
        if target.exists() and not overwrite:
            raise RunDirError(f"run {target} already exists; choose another --name or pass --overwrite")
        if not _claim(area / name):
            raise RunDirError(f"run {target} is being written by another nn-lesson process "
                              f"({_owner(area / name) or 'unknown'}); choose another --name")
        return RunClaim(target, area / name, overwrite)
    for n in range(1, 100_000):  # readable names, numbered when repeated: lr0.5-ce-sigmoid, …-2, …-3
        candidate = default_name + (f"-{n}" if n > 1 else "")
        if not (logdir / candidate).exists() and _claim(area / candidate):
            if not (logdir / candidate).exists():
                return RunClaim(logdir / candidate, area / candidate, False)
            shutil.rmtree(area / candidate, ignore_errors=True)  # a run appeared under the name meanwhile
    raise RunDirError(f"log directory {logdir}: no free run name for {default_name}")


def _claim(staging: Path) -> bool:
    """Exactly one process gets each name, and the name never exists without its owner file: the file is
    written into a private folder first, which is then renamed onto the name. (A plain mkdir followed by
    the write left an ownerless folder, never cleaned, when the process was killed between the two.)"""
    private = staging.parent / f"{CLAIMING}{os.getpid()}-{secrets.token_hex(4)}"
    private.mkdir()
    try:
        (private / OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        os.rename(private, staging)
    except OSError as err:
        shutil.rmtree(private, ignore_errors=True)
        if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False  # another process holds the name
        raise
    return True


def _owner(staging: Path) -> str | None:
    try:
        return (staging / OWNER_FILE).read_text().strip()
    except OSError:
        return None


def remove_stale(area: Path, logdir: Path | None = None) -> None:
    """Remove what killed runs of this machine left in the staging area (their process is gone), and the empty
    folder a run killed while publishing had made under its name in `logdir` (see publish), so that name is free."""
    host = socket.gethostname()
    for entry in area.iterdir():
        owner = _owner(entry) if entry.is_dir() else None
        if owner is None and entry.name.startswith(CLAIMING) and entry.is_dir():
            owner = f"{host} {entry.name[len(CLAIMING):].partition('-')[0]}"  # killed before its owner file
        if owner is None:
            continue
        owner_host, _, pid = owner.partition(" ")
        if owner_host == host and pid.isdigit() and not _alive(int(pid)):
            if logdir is not None:
                _free_reserved_name(entry, logdir)
            shutil.rmtree(entry, ignore_errors=True)


def _free_reserved_name(staging: Path, logdir: Path) -> None:
    try:
        name = (staging / PUBLISHING).read_text().strip()
    except OSError:
        return
    reserved = logdir / name
    if name and "/" not in name and reserved.is_dir() and not reserved.is_symlink():
        try:
            reserved.rmdir()  # only if still empty: a folder that holds anything is someone's run
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_run(claim: RunClaim, fill: Callable[[Path], None]) -> Path:
    """The one way a run folder is written: `fill` writes every file into the claimed staging folder, which
    is then moved into the log directory. If `fill` fails, the claim is released and nothing is published."""
    try:
        fill(claim.staging)
    except BaseException:
        claim.release()
        raise
    return publish(claim)


def publish(claim: RunClaim) -> Path:
    """Move the finished folder into place. An existing run is replaced only when the user named it with
    --overwrite; if a folder appeared under the name meanwhile, the run goes to the next free name."""
    # The owner file goes only at the last moment: a staging folder that cannot be published keeps its owner,
    # so the next run knows whether it is stale.
    target = claim.target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and claim.overwrite:
        old = Path(tempfile.mkdtemp(prefix=f"{target.name}.replaced-", dir=claim.staging.parent))
        (claim.staging / OWNER_FILE).unlink(missing_ok=True)
        os.rename(target, old / target.name)
        os.rename(claim.staging, target)
        shutil.rmtree(old)
        return target
    n = 2
    while True:
        try:
            # rename() would silently replace an empty folder: mkdir first, exclusively, then swap into it.
            (claim.staging / PUBLISHING).write_text(target.name)  # before the folder exists: see below
            target.mkdir()
        except FileExistsError:
            target = claim.target.with_name(f"{claim.target.name}-{n}")
            n += 1
            continue
        # Killed from the mkdir to the rename, the staging folder still has its owner file and names the empty
        # folder it reserved, so the next run removes both (unlinking the owner first left both for good).
        os.rename(claim.staging, target)  # replaces only the empty folder this process just made
        (target / PUBLISHING).unlink(missing_ok=True)
        (target / OWNER_FILE).unlink(missing_ok=True)
        return target
