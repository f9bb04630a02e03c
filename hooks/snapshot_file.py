"""The snapshot file: an uncompressed .npz that numpy alone reads, never pickle.

Each column is one .npy member; member "header" is a 0-d unicode array holding JSON (format name,
version, step count, parameter names/shapes/offsets, layer names). A run record (nn_lesson.lesson.run)
adds its own members, named "record:<name>", and a "record" entry in the header; a SnapshotLog reads
past them. Members are written in a fixed order with a fixed zip timestamp, so the same run gives the
same bytes.

Version 3 (this one) keeps each row whole: a column whose rows differ in shape has a "shape:<column>"
member with each row's own shape (header "row_shapes": true), so a time-first sequence is never cut
along a guessed batch dimension; parameter columns may widen (a parameter that joined the optimizer
later is NaN before). Version 2 held only what the hooks captured plus, optionally, a record, and batch
fields were cut to "batch_size" along their first dimension; it still loads that way. Version 1
(nn-lesson 0.1) also kept the run's settings and evaluations inside the log ("meta", "extra:*"); its
columns are the same and still load as a SnapshotLog.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

FORMAT = "nn-lesson-snapshots"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no wall clock in the bytes


# What reading a damaged zip or .npy header can raise: numpy parses the .npy header dict with ast and tokenize,
# which raise SyntaxError, TokenError, TypeError or RecursionError on garbage.
_UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError, TypeError,
               SyntaxError, tokenize.TokenError, RecursionError)


class SnapshotFileError(ValueError):
    """A snapshot file that cannot be read; str() names the file and what is wrong."""


def write_snapshot_file(path: str | Path, header: dict[str, Any],
                        arrays: dict[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> Path:
    """arrays: a dict, or (name, tensor) pairs made one at a time while the file is written."""
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, **header}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    # O_EXCL: never write into someone else's file; mode 0o666 lets the umask decide, as open() does.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            _member(zf, "header", np.array(json.dumps(header, sort_keys=True)))
            for name, value in (arrays.items() if isinstance(arrays, dict) else arrays):
                if isinstance(value, Blocks):
                    _member_in_blocks(zf, name, value)
                else:
                    _member(zf, name, value.detach().cpu().contiguous().numpy())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Blocks:
    """A member written block by block (rows of one column, a chunk or a segment at a time): its whole shape
    and dtype are known up front, so the column is never gathered in memory to be written."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    blocks: Iterable[torch.Tensor]


def _member_in_blocks(zf: zipfile.ZipFile, name: str, value: Blocks) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    dtype = torch.empty((), dtype=value.dtype).numpy().dtype
    rows = 0
    with zf.open(info, "w", force_zip64=True) as out:
        # the header np.save would write for the same array, so the bytes equal the gathered column's
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(value.shape)}
        try:
            np.lib.format.write_array_header_1_0(out, header)
        except ValueError:  # a header over 64 KiB: format 2.0, as np.save does
            np.lib.format.write_array_header_2_0(out, header)
        for block in value.blocks:
            array = block.detach().cpu().contiguous().numpy()
            if array.shape[1:] != tuple(value.shape[1:]) or array.dtype != dtype:
                raise ValueError(f"member {name!r}: a block of shape {array.shape} {array.dtype} in a column of "
                                 f"{value.shape} {dtype}")
            out.write(array.tobytes())
            rows += len(array)
    if rows != value.shape[0]:
        raise ValueError(f"member {name!r}: {rows} rows written, {value.shape[0]} declared")


def _member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=True) as out:
        np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)


# Limits for reading files of unknown origin, checked before anything is read in full.
MAX_HEADER_BYTES = 16 * 2 ** 20   # the JSON header: a lesson's is a few kB
MAX_JSON_DEPTH = 32               # ours nests 4 deep; deep nesting is an attack on the JSON parser
MAX_INFLATION = 50                # ours are stored, not compressed; a member inflating more is a zip bomb


def read_snapshot_file(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and every member of a snapshot file, refused with SnapshotFileError (one line) unless the
    whole file is consistent. Before any array is read, each member's .npy header is checked against the zip
    directory (its declared shape × dtype must be exactly the member's size, so nothing inflates beyond what
    it declares) and against the JSON header (step counts, parameter offsets and shapes)."""
    header, members = index_snapshot_file(path)
    return header, {name: read_snapshot_member(path, members, name) for name in members if name != "header"}


def index_snapshot_file(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The header and the checked table of members (see read_snapshot_file), without reading any array: a
    streamed log keeps this per segment and reads one member when it is asked for."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotFileError(f"{path}: no such snapshot file")
    if not zipfile.is_zipfile(path):
        raise SnapshotFileError(f"{path}: truncated or corrupt snapshot file (not a zip archive of .npy "
                                "members; a plain .npy?)")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _member_headers(path, zf)
            header = _read_header(path, zf, members)
            _check_layout(path, header, members)
    except SnapshotFileError:
        raise
    except _UNREADABLE as err:
        raise SnapshotFileError(f"{path}: truncated or corrupt snapshot file ({type(err).__name__}: {err})") from None
    return header, members


def read_snapshot_member(path: str | Path, members: dict[str, tuple], name: str) -> np.ndarray:
    """One member of a file indexed by index_snapshot_file."""
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_member(zf, name, members[name])
    except _UNREADABLE as err:
        raise SnapshotFileError(f"{path}: truncated or corrupt snapshot file ({type(err).__name__}: {err})") from None


def read_snapshot_header(path: str | Path) -> dict[str, Any]:
    """The JSON header alone, after the same checks of the zip directory and the header as a full read: cheap
    enough to tell a lesson run from a bridge run or a plain log across a whole logdir."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise SnapshotFileError(f"{path}: not a snapshot file")
    try:
        with zipfile.ZipFile(path) as zf:
            members = _member_headers(path, zf)
            return _read_header(path, zf, members)
    except SnapshotFileError:
        raise
    except _UNREADABLE as err:
        raise SnapshotFileError(f"{path}: truncated or corrupt snapshot file ({type(err).__name__}: {err})") from None


def _member_headers(path: Path, zf: zipfile.ZipFile) -> dict[str, tuple]:
    """member -> (zip entry, shape, dtype, offset of the data, Fortran order), from each .npy header alone."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise SnapshotFileError(f"{path}: unexpected member {info.filename!r} (not an .npy array)")
        name = info.filename[:-4]
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_INFLATION * info.compress_size + 2 ** 20:
            raise SnapshotFileError(f"{path}: member {name!r} would inflate from {info.compress_size} to "
                                    f"{info.file_size} bytes; refused")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = _read_npy_header(f, version)
            data_offset = f.tell()
        if dtype.hasobject:
            raise SnapshotFileError(f"{path}: member {name!r} holds Python objects; snapshot files never do")
        if name != "header" and not _plain_numbers(dtype):
            raise SnapshotFileError(f"{path}: member {name!r} holds {dtype.str} values; snapshot files hold "
                                    "booleans, integers and floats in this machine's byte order only")
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise SnapshotFileError(f"{path}: member {name!r} declares a bad shape {shape}")
        declared = dtype.itemsize * math.prod(shape)
        if data_offset + declared != info.file_size:
            raise SnapshotFileError(f"{path}: member {name!r} declares shape {shape} of {dtype} "
                                    f"({declared} bytes), but the zip directory says {info.file_size - data_offset}")
        out[name] = (info, shape, dtype, data_offset, fortran)
    return out


def _plain_numbers(dtype: np.dtype) -> bool:
    """Booleans, integers or floats, native byte order: what torch.from_numpy and the arithmetic expect (strings,
    dates, complex and structured records, big-endian numbers are refused)."""
    return dtype.kind in "biuf" and dtype.fields is None and dtype.isnative


def _read_npy_header(f, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_header(path: Path, zf: zipfile.ZipFile, members: dict) -> dict[str, Any]:
    if "header" not in members:
        raise SnapshotFileError(f"{path}: not a snapshot file (no header member)")
    info, shape, dtype, _, _ = members["header"]
    if shape != () or dtype.kind != "U" or info.file_size > MAX_HEADER_BYTES:
        raise SnapshotFileError(f"{path}: not a snapshot file (its header is not one JSON string)")
    text = _read_member(zf, "header", members["header"]).item()
    depth = max_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise SnapshotFileError(f"{path}: header JSON nests {depth} levels deep (at most {MAX_JSON_DEPTH})")
    try:
        header = json.loads(text)
    except ValueError as err:
        raise SnapshotFileError(f"{path}: header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise SnapshotFileError(f"{path}: header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT:
        raise SnapshotFileError(f"{path}: not a snapshot file (format {header.get('format')!r})")
    if header.get("version") not in READABLE_VERSIONS:
        raise SnapshotFileError(f"{path}: snapshot format version {header.get('version')!r}; "
                                f"this nn-lesson reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    return header


def max_depth(text: str) -> int:
    """How deeply brackets nest in a JSON text (strings skipped), counted without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_layout(path: Path, header: dict[str, Any], members: dict) -> None:
    """The JSON header's types, and the columns' shapes against it."""
    def bad(what: str) -> SnapshotFileError:
        return SnapshotFileError(f"{path}: header {what}")
    steps = header.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise bad(f"'steps' must be a whole number >= 0, not {steps!r}")
    params, layers = header.get("params"), header.get("layers")
    if not isinstance(params, list) or not isinstance(layers, list) or not all(isinstance(n, str) for n in layers):
        raise bad("needs a list 'params' and a list of names 'layers'")
    width = 0
    for p in params:
        if not (isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("shape"), list)
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in p["shape"])
                and isinstance(p.get("offset"), int) and not isinstance(p.get("offset"), bool)):
            raise bad(f"has a malformed parameter entry {str(p)[:80]!r}")
        if p["offset"] != width:
            raise bad(f"puts parameter {p['name']!r} at offset {p['offset']}, expected {width}")
        width += math.prod(p["shape"])
    types = header.get("layer_types", {})
    if not isinstance(types, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) <= 200
                                              for k, v in types.items()):
        raise bad("'layer_types' must map layer names to class names")
    if not isinstance(header.get("stat_bins", 0), int) or header.get("stat_bins", 0) < 0:
        raise bad("'stat_bins' must be a whole number >= 0")
    absent = header.get("absent", {})
    if not isinstance(absent, dict):
        raise bad("'absent' must map column names to [start, end] row ranges")
    for name, ranges in absent.items():
        if name not in members or not is_column(name) or not isinstance(ranges, list) or not all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in r)
                and 0 <= r[0] < r[1] <= steps for r in ranges):
            raise bad(f"'absent' entry {str(name)[:80]!r} must name a column and hold [start, end] ranges "
                      f"within 0..{steps}")
    for name, (_, shape, _, _, _) in members.items():
        if name == "header" or not is_column(name):
            continue
        if not shape or shape[0] != steps:
            raise SnapshotFileError(f"{path}: column {name!r} has shape {shape}, header says {steps} steps")
        if name.startswith("param_") and shape[1:] != (width,):
            raise SnapshotFileError(f"{path}: column {name!r} rows hold {shape[1:]} numbers, the parameters "
                                    f"in the header {width}")


def read_snapshot_rows(fd: int, members: dict[str, tuple], name: str, start: int, stop: int) -> np.ndarray | None:
    """Rows start..stop-1 of one column of a file indexed by index_snapshot_file, read from the open file `fd` at
    their place (os.pread: no shared position, so threads may read at once); None where the member cannot be
    read in place (compressed, Fortran order, or 0-d), and the caller reads it whole."""
    info, shape, dtype, offset, fortran = members[name]
    if fortran or not shape or info.compress_type != zipfile.ZIP_STORED or not 0 <= start <= stop <= shape[0]:
        return None
    local = os.pread(fd, 30, info.header_offset)  # the member's local header: its own name and extra lengths
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise SnapshotFileError(f"member {name!r}: no local zip header where the directory puts it")
    names, extra = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
    row = dtype.itemsize * math.prod(shape[1:])
    want = (stop - start) * row
    data = os.pread(fd, want, info.header_offset + 30 + names + extra + offset + start * row)
    if len(data) != want:
        raise SnapshotFileError(f"member {name!r}: truncated (rows {start}..{stop - 1} not all there)")
    return np.frombuffer(data, dtype=dtype).reshape((stop - start, *shape[1:])).copy()


def _read_member(zf: zipfile.ZipFile, name: str, member: tuple) -> np.ndarray:
    info, shape, dtype, offset, fortran = member
    with zf.open(info) as f:
        f.seek(offset)
        data = f.read(info.file_size - offset)  # exactly the declared size: checked against the directory
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def is_column(member: str) -> bool:
    """Per-step columns, as opposed to a record's members ("record:*") or version 1's extras ("extra:*")."""
    return not member.startswith(("record:", "extra:"))
