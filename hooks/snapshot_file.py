"""The snapshot file: an uncompressed .npz that numpy alone reads, never pickle.

Each column is one .npy member; member "header" is a 0-d unicode array holding JSON (format name,
version, step count, parameter names/shapes/offsets, layer names). A run record (nn_lesson.lesson.run)
adds its own members, named "record:<name>", and a "record" entry in the header; a SnapshotLog reads
past them. Members are written in a fixed order with a fixed zip timestamp, so the same run gives the
same bytes.

Version 2 (this one) holds only what the hooks captured plus, optionally, a record. Version 1 (nn-lesson
0.1) also kept the run's settings and evaluations inside the log ("meta", "extra:*"); its columns
are the same and still load as a SnapshotLog.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "nn-lesson-snapshots"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no wall clock in the bytes


class SnapshotFileError(ValueError):
    """A snapshot file that cannot be read; str() names the file and what is wrong."""


def write_snapshot_file(path: str | Path, header: dict[str, Any], arrays: dict[str, torch.Tensor]) -> Path:
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, **header}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    # O_EXCL: never write into someone else's file; mode 0o666 lets the umask decide, as open() does.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            _member(zf, "header", np.array(json.dumps(header, sort_keys=True)))
            for name, tensor in arrays.items():
                _member(zf, name, tensor.detach().cpu().contiguous().numpy())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as out:
        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)


def read_snapshot_file(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise SnapshotFileError(f"{path}: no such snapshot file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "header" not in npz.files:
                raise SnapshotFileError(f"{path}: not a snapshot file (no header member)")
            header = json.loads(npz["header"].item())
            if header.get("format") != FORMAT:
                raise SnapshotFileError(f"{path}: not a snapshot file (format {header.get('format')!r})")
            if header.get("version") not in READABLE_VERSIONS:
                raise SnapshotFileError(f"{path}: snapshot format version {header.get('version')!r}; "
                                        f"this nn-lesson reads versions {', '.join(map(str, READABLE_VERSIONS))}")
            arrays = {name: npz[name] for name in npz.files if name != "header"}
    except SnapshotFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise SnapshotFileError(f"{path}: truncated or corrupt snapshot file ({type(err).__name__}: {err})") from None
    for name, array in arrays.items():
        if is_column(name) and len(array) != header["steps"]:
            raise SnapshotFileError(f"{path}: column {name!r} has {len(array)} rows, header says {header['steps']}")
    return header, arrays


def is_column(member: str) -> bool:
    """Per-step columns, as opposed to a record's members ("record:*") or version 1's extras ("extra:*")."""
    return not member.startswith(("record:", "extra:"))
