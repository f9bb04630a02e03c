"""Column: one growing tensor per field, stored in chunks of 32, 32, 64, 128, then 256 rows.

Chunks (rather than one tensor that doubles) keep the memory held within one chunk of the numbers
stored, and appending never copies what is already there. Rows of different shapes (batches of 8, 8
and 4; sequences of different lengths) are padded to the largest seen along each dimension (NaN for
floats, -1 for integers); the SnapshotLog keeps each row's own shape beside it.

Hot path: the Recorder stages each step's values (SnapshotLog.stage_step) and they arrive here in
bulk through put_rows: one torch.stack per column for each batch of staged steps.

Absent cells: a row no write reached (a step without this field, as when `optimizer.step()` runs twice after
one backward) holds the pad value, never leftover memory, whatever the order of writes, and the column keeps
the ranges of such rows (`absent`) so that reading one says it is absent rather than returning NaN as if
measured. Rows at or above `filled` are untouched memory; every row below it holds a value or padding.
"""

from __future__ import annotations

import bisect

import torch

CHUNK_ROWS = 256
# A chunk holds at most this many bytes (at least one row): a ResNet layer's output of a few MiB a row would
# otherwise allocate 32 rows ahead at once, hundreds of MiB per column before a single step fills them.
CHUNK_BYTES = 8 << 20
# The first chunk's rows; later ones double up to CHUNK_ROWS. Every chunk then starts at a multiple of it,
# and the SnapshotLog stages that many steps per flush, so each flush is one stack into one chunk.
FIRST_CHUNK_ROWS = 32


def pad_value(dtype: torch.dtype) -> float | int | bool:
    if dtype.is_floating_point or dtype.is_complex:
        return float("nan")
    return False if dtype == torch.bool else -1


def padded(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A new tensor of `shape` filled with the pad value."""
    return torch.full(shape, pad_value(dtype), dtype=dtype)


class Column:
    __slots__ = ("row_shape", "dtype", "chunks", "chunk_rows", "name", "starts", "sizes", "capacity", "filled",
                 "absent")

    def __init__(self, row_shape: tuple[int, ...], dtype: torch.dtype, chunk_rows: int = CHUNK_ROWS,
                 name: str = ""):
        self.row_shape = tuple(row_shape)
        self.dtype = dtype
        self.chunks: list[torch.Tensor] = []
        row_bytes = dtype.itemsize
        for n in row_shape:
            row_bytes *= n
        self.chunk_rows = max(1, min(chunk_rows, CHUNK_BYTES // max(1, row_bytes)))
        self.name = name
        self.starts: list[int] = []   # first row of each chunk, kept as chunks are added (the hot path reads it)
        self.sizes: list[int] = []    # rows of each chunk
        self.capacity = 0
        # Rows below `filled` hold values or padding; chunks are allocated empty and a row is padded only
        # when a later row is written or it is read: fresh memory is written once, not filled and then written.
        self.filled = 0
        self.absent: list[tuple[int, int]] = []  # [start, end) ranges of rows padded because no write reached them

    @classmethod
    def from_values(cls, values: torch.Tensor, name: str = "",
                    absent: list[tuple[int, int]] | None = None) -> "Column":
        col = cls(tuple(values.shape[1:]), values.dtype, max(1, values.shape[0]), name)
        col.chunks, col.starts, col.sizes, col.capacity = [values], [0], [values.shape[0]], values.shape[0]
        col.filled = values.shape[0]
        col.absent = [tuple(r) for r in absent or []]
        return col

    # ---- writing ----
    def put_rows(self, rows: list[int], values: list, whole: bool | None = None) -> None:
        """Write staged rows: `values` are tensors or plain numbers. Consecutive rows of the column's
        shape go in with one torch.stack; others one by one. `whole`: the caller has checked that every
        tensor has the column's row shape (None: check here). Runs for every column of every flush, so
        it reads Python ints it keeps (sizes, capacity), not tensor attributes."""
        start, last, n = rows[0], rows[-1], len(rows)
        if last >= self.capacity:
            self._allocate(last)
        consecutive = last - start == n - 1
        self._written(start, last + 1, None if consecutive else rows)
        if not isinstance(values[0], torch.Tensor):
            if consecutive:
                self._put(start, torch.tensor(values, dtype=self.dtype))
            else:
                for r, v in zip(rows, values):
                    self.row(r).fill_(v)
        elif consecutive and (whole if whole is not None else
                              [t.shape for t in values].count(self.row_shape) == n):
            if values[0].dtype != self.dtype or not values[0].is_cpu:  # another dtype, or on a GPU: one stack
                self._put(start, torch.stack(values))               # there, one copy into host memory
                return
            done = 0
            while done < n:  # one copy into place per chunk the rows fall in (usually one)
                chunk, offset = self._locate(start + done)
                k = min(n - done, self.sizes[chunk] - offset)
                torch.stack(values[done: done + k], out=self.chunks[chunk][offset: offset + k])
                done += k
        else:
            for r, t in zip(rows, values):
                self.write(r, t)

    def put_block(self, rows: list[int], values: torch.Tensor) -> None:
        """Write rows from one tensor (len(rows), *row_shape) of the column's dtype: copied straight into
        their chunks when the rows are consecutive, without splitting it into a tensor per row."""
        start, last = rows[0], rows[-1]
        if last - start != len(rows) - 1 or values.shape[1:] != self.row_shape or values.dtype != self.dtype:
            self.put_rows(rows, list(values))
            return
        if last >= self.capacity:
            self._allocate(last)
        self._written(start, last + 1)
        self._put(start, values)

    def _locate(self, i: int) -> tuple[int, int]:
        """(chunk, offset) of row i. Chunks grow 32, 32, 64, ... up to chunk_rows rows, so a short log
        stays small and a long one costs one chunk of slack at most."""
        chunk = bisect.bisect_right(self.starts, i) - 1
        return chunk, i - self.starts[chunk]

    def _put(self, start: int, values: torch.Tensor) -> None:
        """Copy consecutive rows starting at `start` into their chunk(s)."""
        done = 0
        while done < len(values):
            chunk, offset = self._locate(start + done)
            n = min(len(values) - done, self.sizes[chunk] - offset)
            self.chunks[chunk][offset: offset + n].copy_(values[done: done + n])
            done += n

    def _allocate(self, i: int) -> None:
        while i >= self.capacity:
            rows = min(self.chunk_rows, FIRST_CHUNK_ROWS << max(0, len(self.chunks) - 1))
            self.chunks.append(torch.empty((rows, *self.row_shape), dtype=self.dtype))
            self.starts.append(self.capacity)
            self.sizes.append(rows)
            self.capacity += rows

    def _written(self, start: int, end: int, rows: list[int] | None = None) -> None:
        """Rows start..end-1 (or only `rows` among them) are about to be written: pad the rows never written
        that they skip, and rows padded earlier are present from now on."""
        if self.absent and start < self.filled:
            self._present(range(start, end) if rows is None else rows)
        if start > self.filled:
            self._pad(self.filled, start)
        if rows is not None and end > self.filled:  # gaps between the rows written
            kept, gap = set(rows), None
            for r in range(max(start, self.filled), end + 1):
                if r < end and r not in kept:
                    gap = r if gap is None else gap
                elif gap is not None:
                    self._pad(gap, r)
                    gap = None
        self.filled = max(self.filled, end)

    def _pad(self, start: int, end: int) -> None:
        """Fill never-written rows start..end-1 with the pad value and remember them as absent."""
        self._allocate(end - 1)
        if self.absent and self.absent[-1][1] == start:
            self.absent[-1] = (self.absent[-1][0], end)
        else:
            self.absent.append((start, end))
        while start < end:
            chunk, offset = self._locate(start)
            n = min(end - start, self.sizes[chunk] - offset)
            self.chunks[chunk][offset: offset + n].fill_(pad_value(self.dtype))
            start += n

    def _present(self, rows) -> None:
        """These rows are written now: none of them is absent any longer (rare: only a write below `filled`)."""
        lo, hi = rows[0], rows[-1] + 1
        if not any(s < hi and lo < e for s, e in self.absent):
            return
        written = set(rows)
        left = []
        for s, e in self.absent:
            run = None
            for r in range(s, e + 1):
                if r < e and r not in written:
                    run = r if run is None else run
                elif run is not None:
                    left.append((run, r))
                    run = None
        self.absent = left

    def present(self, i: int) -> bool:
        """Did a write reach row i (False: the row holds only the pad value)?"""
        return not any(s <= i < e for s, e in self.absent)

    def absent_ranges(self, n: int) -> list[tuple[int, int]]:
        """The [start, end) ranges among rows 0..n-1 that no write reached (rows up to n padded first)."""
        self._readable(n)
        return [(s, min(e, n)) for s, e in self.absent if s < n]

    def _readable(self, n: int) -> None:
        """Rows below n are read: pad the ones never written."""
        if n > self.filled:
            self._pad(self.filled, n)
            self.filled = n

    def row(self, i: int) -> torch.Tensor:
        """The storage of row i, to write into directly (the eager path); allocates chunks as needed."""
        self._allocate(i)
        self._written(i, i + 1)
        chunk, offset = self._locate(i)
        return self.chunks[chunk][offset]

    def write(self, i: int, value: torch.Tensor) -> None:
        """Copy value into row i now. A value smaller than the row along any dimension fills its front (the
        rest is padding); a larger one widens the column, padding the rows before it."""
        row = self.row(i)
        if value.shape == row.shape:
            row.copy_(value)
            return
        if value.dim() != row.dim():
            raise ValueError(f"column {self.name!r}: shape {tuple(value.shape)} does not fit rows of shape "
                             f"{self.row_shape}")
        if any(v > r for v, r in zip(value.shape, row.shape)):
            self._widen(tuple(max(v, r) for v, r in zip(value.shape, row.shape)))
            row = self.row(i)
        row.fill_(pad_value(self.dtype))
        row[tuple(slice(0, n) for n in value.shape)].copy_(value)

    def _widen(self, row_shape: tuple[int, ...]) -> None:
        old, self.row_shape = self.chunks, row_shape
        self.chunks = []
        for chunk in old:
            wide = padded((len(chunk), *row_shape), self.dtype)
            wide[(slice(None), *(slice(0, n) for n in chunk.shape[1:]))].copy_(chunk)
            self.chunks.append(wide)

    def promote(self, dtype: torch.dtype) -> None:
        """Hold `dtype` from now on (e.g. float32 -> float64 after a layer's .double()): exact for every row."""
        self.chunks = [c.to(dtype) for c in self.chunks]
        self.dtype = dtype

    # ---- reading ----
    def at(self, i: int) -> torch.Tensor:
        """Row i (a view), without gathering the whole column."""
        self._readable(i + 1)
        chunk, offset = self._locate(i)
        return self.chunks[chunk][offset]

    def values(self, n: int) -> torch.Tensor:
        """Rows 0..n-1 as one tensor (a view when they sit in a single chunk)."""
        if n == 0:
            return torch.empty((0, *self.row_shape), dtype=self.dtype)
        self._readable(n)
        if n <= self.sizes[0]:
            return self.chunks[0][:n]
        used = self._locate(n - 1)[0] + 1
        return torch.cat(self.chunks[:used])[:n]

    def blocks(self, n: int):
        """Rows 0..n-1 a chunk at a time (views): for writing a column without gathering it."""
        self._readable(n)
        for start, size, chunk in zip(self.starts, self.sizes, self.chunks):
            if start >= n:
                break
            yield chunk[: min(size, n - start)]

    def keep(self, rows: list[int]) -> "Column":
        """A new column of these rows (ascending) in order, absent ones still absent; gathered row by row into
        fresh chunks, so the memory needed on top of this column is the new one's."""
        out = Column(self.row_shape, self.dtype, CHUNK_ROWS, self.name)
        if not rows:
            return out
        self._readable(rows[-1] + 1)
        for start in range(0, len(rows), FIRST_CHUNK_ROWS):
            part = rows[start: start + FIRST_CHUNK_ROWS]
            out.put_rows(list(range(start, start + len(part))), [self.at(r) for r in part], True)
        for i, r in enumerate(rows):
            if not self.present(r):
                last = out.absent[-1] if out.absent else None
                out.absent[-1:] = [(last[0], i + 1)] if last and last[1] == i else [*out.absent[-1:], (i, i + 1)]
        return out

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.chunks)
