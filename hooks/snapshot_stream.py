"""StreamedLog: a SnapshotLog that writes its rows to a folder as it flushes, and reads them back lazily.

    with Recorder(model, opt, loss_fn, stream_to="runs/stream") as rec: ...
    log = SnapshotLog.load("runs/stream")      # or StreamedLog.open(...): any row, any column, never all at once

Each flush (a chunk of steps, at most STAGED_BYTES of them; see snapshot_log.py) becomes one segment file,
segment-000001.npz, segment-000002.npz, ...: an ordinary snapshot file of those rows (snapshot_file.py: no
pickle, the header checked before any array is read), written beside its final name and renamed into place,
so a process killed at any moment leaves every flushed segment whole and at most one stray ".part" file. The
rows held in memory are one flush's; what the log holds on disk counts against the Recorder's memory budget
like rows in memory do, so the default policy keeps a streamed run's folder within it too.

Segment 0 holds no rows: written when the log is made, it names the parameters and layers, so a run killed
before its first flush still opens (as zero steps). Reading: each segment's header and member table are
checked once, when the log is opened or the segment written; a row reads that segment's members (at most one
segment cached); a whole column reads one member of each segment. Segments may differ in their columns (a
field that appeared later, a parameter that joined the optimizer) and in their rows' shapes: rows are padded
to the widest (NaN, -1, False), rows of a segment without a column are absent, and a "shape:<column>" column
is made up wherever shapes differ, exactly as one in-memory log of the same run would hold them.

This is the zarr idea (a chunked array as one file per chunk plus its metadata) without zarr: hooks/ imports
torch and numpy only, and each segment is a file every other reader of this package already checks.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from nn_lesson.hooks.columns import pad_value
from nn_lesson.hooks.snapshot_file import (SnapshotFileError, index_snapshot_file, is_column, read_snapshot_file,
                                           read_snapshot_member, read_snapshot_rows)
from nn_lesson.hooks.snapshot_log import ParamSlot, SnapshotLog, _return_freed_memory

SEGMENT = re.compile(r"segment-(\d{6,})\.npz")
ROW_AT_A_TIME = 8 << 20  # bytes: a member of a lazily opened file larger than this is read a row at a time


def _segment_name(seq: int) -> str:
    return f"segment-{seq:06d}.npz"


class _Segment:
    """One segment file: its rows' place in the log and what its header says, kept small (a long run has thousands
    of segments): the column layout, parameters and absent ranges are shared with every segment whose are equal,
    and the table of members (where each array starts) is read again when a read needs it."""

    __slots__ = ("path", "first", "steps", "layout", "params", "absent_of", "nbytes", "file", "members")

    def __init__(self, path: Path, first: int, shared: dict, keep_open: bool = False):
        self.path, self.first = path, first
        # a file read one row at a time keeps its descriptor: rows come from the file that was checked
        self.file = open(path, "rb") if keep_open else None
        header, members = index_snapshot_file(path)
        self.steps = header["steps"]
        self.nbytes = path.stat().st_size

        def one(value):  # the equal object another segment already holds, else this one
            key = repr(value)
            return shared.setdefault(key, value)
        self.layout: dict[str, tuple[tuple[int, ...], np.dtype]] = one(
            {name: (tuple(m[1][1:]), m[2]) for name, m in members.items() if name != "header" and is_column(name)})
        self.params = one(header["params"])
        self.absent_of: dict[str, list] = one(header.get("absent", {}))
        self.members = members if keep_open else None  # one file read lazily keeps its table: its one segment

    def shape(self, name: str) -> tuple[int, ...] | None:
        column = self.layout.get(name)
        return column[0] if column is not None else None

    def absent(self, name: str) -> list[tuple[int, int]]:
        """Ranges of this segment's rows (log rows) with no value in `name`."""
        if name not in self.layout:
            return [(self.first, self.first + self.steps)] if self.steps else []
        return [(self.first + s, self.first + e) for s, e in self.absent_of.get(name, [])]


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


class StreamedColumn:
    """A column read from the segments on demand: what the readers of a SnapshotLog ask of a Column."""

    def __init__(self, log: "StreamedLog", name: str):
        self.log, self.name = log, name
        segments = [s for s in log._segments if s.steps]
        shape_of = name[len("shape:"):] if name.startswith("shape:") else None
        # a made-up shape column: segments without their own give each row the segment's row shape
        self._made_up = shape_of is not None and any(shape_of in s.layout and name not in s.layout for s in segments)
        shapes = [s.shape(name) for s in segments if name in s.layout]
        dtypes = [s.layout[name][1] for s in segments if name in s.layout]
        if self._made_up:
            dims = {len(s.shape(shape_of)) for s in segments if shape_of in s.layout}
            shapes, dtypes = [(dims.pop(),)], [np.dtype(np.int64)]
        dtype = dtypes[0]
        for d in dtypes[1:]:
            dtype = np.promote_types(dtype, d)
        self.dtype = _torch_dtype(dtype)
        self.row_shape = tuple(max(dims) for dims in zip(*shapes)) if shapes[0] else ()

    def _segment_rows(self, seg: _Segment) -> torch.Tensor | None:
        """All of one segment's rows of this column, padded to the column's row shape (None: not there)."""
        if self._made_up and self.name not in seg.layout:
            of = seg.shape(self.name[len("shape:"):])
            if of is None:
                return None
            return torch.tensor(of, dtype=torch.int64).expand(seg.steps, len(of)).clone()
        array = self.log._member(seg, self.name)
        return None if array is None else self._padded(array)

    def _padded(self, array: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(array).to(self.dtype)
        if tuple(rows.shape[1:]) == self.row_shape:
            return rows
        out = torch.full((len(rows), *self.row_shape), pad_value(self.dtype), dtype=self.dtype)
        out[(slice(None), *(slice(0, n) for n in rows.shape[1:]))] = rows
        return out

    def blocks(self, n: int) -> Iterator[torch.Tensor]:
        for seg in self.log._segments:
            if seg.first >= n or not seg.steps:
                continue
            rows = self._segment_rows(seg)
            if rows is None:
                rows = torch.full((seg.steps, *self.row_shape), pad_value(self.dtype), dtype=self.dtype)
            yield rows[: n - seg.first]

    def values(self, n: int) -> torch.Tensor:
        parts = list(self.blocks(n))
        return torch.cat(parts) if parts else torch.empty((0, *self.row_shape), dtype=self.dtype)

    def at(self, i: int) -> torch.Tensor:
        seg = self.log._locate(i)
        members = self.log._members(seg) if seg.file is not None and self.name in seg.layout else {}
        if self.name in members and members[self.name][0].file_size > ROW_AT_A_TIME:
            row = read_snapshot_rows(seg.file.fileno(), members, self.name, i - seg.first, i - seg.first + 1)
            if row is not None:
                return self._padded(row)[0]
        rows = self._segment_rows(seg) if self._made_up else self.log._cached_rows(seg, self)
        if rows is None:
            return torch.full(self.row_shape, pad_value(self.dtype), dtype=self.dtype)
        return rows[i - seg.first]

    def present(self, i: int) -> bool:
        seg = self.log._locate(i)
        if self._made_up and self.name not in seg.layout:
            return seg.shape(self.name[len("shape:"):]) is not None
        return not any(s <= i < e for s, e in seg.absent(self.name))

    def absent_ranges(self, n: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for seg in self.log._segments:
            if seg.first >= n:
                break
            if self._made_up and self.name not in seg.layout and seg.shape(self.name[len("shape:"):]) is not None:
                continue
            for s, e in seg.absent(self.name):
                s, e = s, min(e, n)
                if out and out[-1][1] == s:
                    out[-1] = (out[-1][0], e)
                else:
                    out.append((s, e))
        return out

    @property
    def nbytes(self) -> int:
        return 0  # on disk: the log's held_bytes counts the files


class StreamedLog(SnapshotLog):
    """A SnapshotLog whose committed rows live in segment files under `folder` (see the module's docstring)."""

    def __init__(self, folder: str | Path, params: list[ParamSlot] | None = None, layers: list[str] | None = None,
                 stat_bins: int = 0, *, layer_types: dict[str, str] | None = None, _reading: bool = False):
        super().__init__(params, layers, stat_bins, layer_types=layer_types)
        self.folder = Path(folder)
        self._segments: list[_Segment] = []
        self._cache: tuple[_Segment | None, dict[str, torch.Tensor | None]] = (None, {})
        self._index: tuple[_Segment | None, dict[str, tuple]] = (None, {})
        self._shared: dict[str, Any] = {}  # the segments' equal layouts, parameter lists and absent ranges, once
        self._disk_bytes = 0
        self._next = 0
        self._columns_of: tuple[tuple[int, int] | None, dict[str, StreamedColumn]] = (None, {})
        self.unwritten: str | None = None  # why the rows in memory are not on disk yet, if a write failed
        # this step's rows in memory, as an ordinary log numbered from the segment's first row
        self._memory = SnapshotLog(self.params, self.layers, stat_bins, layer_types=self.layer_types)
        self._memory.changed = self.changed
        self._memory._work = self._work
        self.read_only = _reading
        if _reading:
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise FileExistsError(f"{self.folder}: is a file, not a folder; stream_to= takes a folder (a new one, or "
                                  "an empty one)")
        if self.holds_stream(self.folder):
            raise FileExistsError(f"{self.folder}: already holds a streamed log; stream to a new folder, or read this "
                                  "one with SnapshotLog.load")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(err.errno, f"{self.folder}: cannot make the stream folder ({err.strerror})") from None
        self._write_segment()  # segment 0: the parameters and layers, before any row

    @staticmethod
    def holds_stream(folder: Path) -> bool:
        return folder.is_dir() and any(SEGMENT.fullmatch(p.name) for p in folder.iterdir())

    # ---- writing ----
    @property
    def _base(self) -> int:
        return self._segments[-1].first + self._segments[-1].steps if self._segments else 0

    def _writing(self) -> None:
        if self.read_only:
            raise RuntimeError(f"{self.folder}: a log opened for reading is never written to; record into a new one")

    def stage_step(self, row: int, items: list[tuple[str, Any, int | None]]) -> None:
        self._writing()
        self._memory.stage_step(row - self._base, items)
        self.steps = row + 1
        if not self._memory._staged:  # that step filled a flush: its rows go to disk
            self._write_segment()

    def row_for(self, name: str, row: int, width: int, dtype: torch.dtype) -> torch.Tensor | None:
        return None  # rows are staged: a row written in place would be cut off by the flush to disk before it

    def add_params(self, slots: list[ParamSlot]) -> None:
        self._writing()
        self.flush()
        self.params += slots
        self._memory.params = self.params

    def flush(self) -> None:
        self._memory.flush()
        if self.steps > self._base:
            self._write_segment()

    def _write_segment(self) -> None:
        """The rows in memory (all flushed) as the next segment; then memory holds none. A segment that cannot be
        written (disk full, folder gone) is said once and its rows stay in memory, to be written with the next
        flush's: this runs inside the user's optimizer.step(), and recording never ends a training run."""
        memory = self._memory
        memory.steps = self.steps - self._base
        try:
            path = memory.save(self.folder / _segment_name(self._next))
        except OSError as err:
            if self.unwritten is None:
                logging.getLogger("nn_lesson").warning(
                    f"StreamedLog: cannot write to {self.folder} ({err.strerror or err}); steps {self._base}.. stay "
                    "in memory and are written with the next flush that can")
            self.unwritten = (f"{self.folder}: steps {self._base}..{self.steps - 1} could not be written "
                              f"({err.strerror or err})")
            return
        self.unwritten = None
        self._next += 1
        self._add_segment(path)
        memory.columns = {}
        memory.steps = 0
        _return_freed_memory()

    def _add_segment(self, path: Path) -> None:
        seg = _Segment(path, self._base, self._shared)
        self._segments.append(seg)
        self._disk_bytes += seg.nbytes

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these rows (ascending): each segment is rewritten with its kept rows (or removed), one at a
        time, each replaced whole, so a process killed meanwhile leaves every segment readable."""
        self._writing()
        self.flush()
        if self.unwritten is not None:
            return  # nothing can be rewritten now; the rows stay, and the budget is over until writing works
        kept = set(rows)
        segments, self._segments, self._disk_bytes = self._segments, [], 0
        self._cache = self._index = (None, {})
        for seg in segments:
            mine = [r - seg.first for r in range(seg.first, seg.first + seg.steps) if r in kept]
            if seg.steps and not mine and seg is not segments[0]:
                seg.path.unlink()
                continue
            if len(mine) != seg.steps:
                part = SnapshotLog.from_file_contents(*read_snapshot_file(seg.path))
                part.keep_rows(mine)
                part.save(seg.path)
            self._add_segment(seg.path)
        self.steps = len(rows)
        _return_freed_memory()

    @property
    def held_bytes(self) -> int:
        """Bytes this log holds: its segment files and the rows in memory."""
        return self._disk_bytes + self._memory.held_bytes

    # ---- reading ----
    @classmethod
    def open(cls, folder: str | Path) -> "StreamedLog":
        """The streamed log in `folder`, as far as it was flushed (a run still going, or killed, reads up to its
        last whole segment)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise SnapshotFileError(f"{folder}: no such streamed log (not a folder)")
        names = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := SEGMENT.fullmatch(p.name)))
        if not names:
            raise SnapshotFileError(f"{folder}: not a streamed log (no segment-*.npz files in it)")
        log: StreamedLog | None = None
        for seq, path in names:
            try:
                log = cls._with_segment(log, folder, path)
            except SnapshotFileError as err:
                raise SnapshotFileError(f"{err}; the stream's other segments read once this one is moved out of "
                                        f"{folder}") from None
            log._next = seq + 1
        log.steps = log._base
        return log

    @classmethod
    def _with_segment(cls, log: "StreamedLog | None", folder: Path, path: Path) -> "StreamedLog":
        """`log` with the segment at `path` added after its others (a new reading log for the first one)."""
        if log is None:
            header = index_snapshot_file(path)[0]
            log = cls(folder, [ParamSlot(p["name"], tuple(p["shape"]), p["offset"]) for p in header["params"]],
                      header["layers"], header.get("stat_bins", 0),
                      layer_types=header.get("layer_types"), _reading=True)
        log._add_segment(path)
        params = log._segments[-1].params
        if [p["name"] for p in params[: len(log.params)]] != log.param_names[: len(params)]:
            raise SnapshotFileError(f"{path}: its parameters are not those of the segments before it")
        if len(params) > len(log.params):
            log.params += [ParamSlot(p["name"], tuple(p["shape"]), p["offset"]) for p in params[len(log.params):]]
        return log

    @classmethod
    def open_file(cls, path: str | Path) -> "StreamedLog":
        """One snapshot file read lazily (SnapshotLog.open): a row reads that row of each column from the file, a
        column its member; the file stays open (the one that was checked) until the log is let go or closed."""
        path = Path(path)
        header = index_snapshot_file(path)[0]
        log = cls(path.parent, [ParamSlot(p["name"], tuple(p["shape"]), p["offset"]) for p in header["params"]],
                  header["layers"], header.get("stat_bins", 0),
                      layer_types=header.get("layer_types"), _reading=True)
        log.row_shapes = header.get("row_shapes", False)
        log._segments.append(_Segment(path, 0, log._shared, keep_open=True))
        log.steps = log._base
        return log

    def close(self) -> None:
        """Let go of the files a lazily opened log keeps open."""
        for seg in self._segments:
            if seg.file is not None:
                seg.file.close()
                seg.file = None

    @property
    def columns(self) -> dict[str, StreamedColumn]:
        self.flush()
        if self.unwritten is not None:
            raise SnapshotFileError(f"{self.unwritten}; they are still in memory: make room (or put the folder "
                                    "back), then read rec.log again")
        key = (len(self._segments), self._disk_bytes)
        if self._columns_of[0] != key:
            names = dict.fromkeys(n for seg in self._segments if seg.steps for n in seg.layout)
            for name in list(names):  # rows of different shapes across segments: each row's own shape, made up
                if not name.startswith(("shape:", "param_")) and len(
                        {seg.shape(name) for seg in self._segments if seg.steps and name in seg.layout}) > 1:
                    names.setdefault(f"shape:{name}")
            self._columns_of = (key, {name: StreamedColumn(self, name) for name in names})
        return self._columns_of[1]

    def _locate(self, i: int) -> _Segment:
        lo, hi = 0, len(self._segments) - 1
        while lo < hi:  # the last segment starting at or before row i
            mid = (lo + hi + 1) // 2
            if self._segments[mid].first <= i:
                lo = mid
            else:
                hi = mid - 1
        while not self._segments[lo].steps or i >= self._segments[lo].first + self._segments[lo].steps:
            lo += 1
        return self._segments[lo]

    def _member(self, seg: _Segment, name: str) -> np.ndarray | None:
        if name not in seg.layout:
            return None
        members = self._members(seg)
        if seg.file is None:
            return read_snapshot_member(seg.path, members, name)
        # a file opened lazily is read through the descriptor kept open: its path may name another file by now
        rows = read_snapshot_rows(seg.file.fileno(), members, name, 0, members[name][1][0] if members[name][1] else 0)
        if rows is not None:
            return rows
        return read_snapshot_member(f"/proc/self/fd/{seg.file.fileno()}", members, name)

    def _members(self, seg: _Segment) -> dict[str, tuple]:
        """The segment's table of members, read again from its file (the last one kept): a row's reads all use it."""
        if seg.members is not None:
            return seg.members
        kept, members = self._index
        if kept is not seg:
            members = index_snapshot_file(seg.path)[1]
            self._index = (seg, members)
        return members

    def _cached_rows(self, seg: _Segment, column: StreamedColumn) -> torch.Tensor | None:
        """A segment's rows of a column, one segment's columns kept: reading a row reads each member once."""
        cached, rows = self._cache
        if cached is not seg:
            rows = {}
            self._cache = (seg, rows)
        if column.name not in rows:
            rows[column.name] = column._segment_rows(seg)
        return rows[column.name]

    def __repr__(self) -> str:
        if len(self._segments) == 1 and self._segments[0].file is not None:
            return f"{super().__repr__()[:-1]}; read lazily from {self._segments[0].path})"
        n = len(self._segments)
        return f"{super().__repr__()[:-1]}; streamed to {self.folder}, {n} segment{'s' * (n != 1)})"
