"""Column: one growing tensor per field, stored in fixed-size chunks.

Chunks (rather than one tensor that doubles) keep the memory held within one chunk of the numbers
stored, and appending never copies what is already there. Rows of a batch field are padded to the
widest batch seen (NaN for floats, -1 for integers); a step's own batch size is kept beside it.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256


def pad_value(dtype: torch.dtype) -> float | int | bool:
    if dtype.is_floating_point or dtype.is_complex:
        return float("nan")
    return False if dtype == torch.bool else -1


class Column:
    __slots__ = ("row_shape", "dtype", "chunks", "chunk_rows")

    def __init__(self, row_shape: tuple[int, ...], dtype: torch.dtype, chunk_rows: int = CHUNK_ROWS):
        self.row_shape = tuple(row_shape)
        self.dtype = dtype
        self.chunks: list[torch.Tensor] = []
        self.chunk_rows = chunk_rows

    @classmethod
    def from_values(cls, values: torch.Tensor) -> "Column":
        col = cls(tuple(values.shape[1:]), values.dtype, max(1, values.shape[0]))
        col.chunks = [values]
        return col

    def row(self, i: int) -> torch.Tensor:
        """The storage of row i, to write into; allocates (padded) chunks as needed."""
        chunk, offset = divmod(i, self.chunk_rows)
        while chunk >= len(self.chunks):
            self.chunks.append(torch.full((self.chunk_rows, *self.row_shape), pad_value(self.dtype), dtype=self.dtype))
        return self.chunks[chunk][offset]

    def write(self, i: int, value: torch.Tensor) -> None:
        """Copy value into row i. A batch narrower than the row fills the front; wider widens the column."""
        row = self.row(i)
        if value.shape == row.shape:
            row.copy_(value)
            return
        if value.dim() != row.dim() or value.shape[1:] != row.shape[1:]:
            raise ValueError(f"shape {tuple(value.shape)} does not fit column rows of shape {self.row_shape}")
        if value.shape[0] > row.shape[0]:
            self._widen(value.shape[0])
            row = self.row(i)
        row[: value.shape[0]].copy_(value)
        row[value.shape[0]:].fill_(pad_value(self.dtype))

    def _widen(self, batch: int) -> None:
        old = self.chunks
        self.row_shape = (batch, *self.row_shape[1:])
        self.chunks = []
        for chunk in old:
            wide = torch.full((self.chunk_rows, *self.row_shape), pad_value(self.dtype), dtype=self.dtype)
            wide[:, : chunk.shape[1]].copy_(chunk)
            self.chunks.append(wide)

    def values(self, n: int) -> torch.Tensor:
        """Rows 0..n-1 as one tensor (a view when they sit in a single chunk)."""
        if n == 0:
            return torch.empty((0, *self.row_shape), dtype=self.dtype)
        used = -(-n // self.chunk_rows)
        if used == 1:
            return self.chunks[0][:n]
        return torch.cat(self.chunks[:used])[:n]

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.chunks)
