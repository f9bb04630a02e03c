"""Summary statistics of many captured tensors at once: one row per step of
[mean, std, norm, min, max, histogram counts...], computed for a whole batch of steps in a few passes.

A statistics-only Recorder calls this every few dozen steps for the rest of a run, so its temporaries
(the bin of every number, as float and as int32) can live in a WorkBuffers that is reused from call to
call: memory then stays flat however long the run, instead of growing with allocator fragmentation
when fresh temporaries of a few MB are interleaved with the log's small long-lived rows (measured
+216 MiB at 20,000 steps before).
"""

from __future__ import annotations

import torch

STAT_NAMES = ("mean", "std", "norm", "min", "max")


class WorkBuffers:
    """Scratch tensors reused across calls, one per role; grown when a larger one is asked for."""

    def __init__(self):
        self._buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        buf = self._buffers.get((role, dtype))
        if buf is None or buf.numel() < n:
            buf = self._buffers[(role, dtype)] = torch.empty(n, dtype=dtype)
        return buf[:n].view(shape)


def row_stats(values: torch.Tensor, bins: int, work: WorkBuffers | None = None) -> torch.Tensor:
    """values: (steps, ...). Returns (steps, 5 + bins) in values' float dtype: population std; the
    histogram has `bins` even buckets from each row's min to its max (torch.histc's convention).
    Non-finite entries (batch padding) are left out; a row with none left is all NaN. `work`: buffers
    for the temporaries (fresh ones without it)."""
    work = work or WorkBuffers()
    x = values.reshape(values.shape[0], -1)
    if not x.dtype.is_floating_point:
        x = x.to(torch.float32)
    rows, bins_ = x.shape[0], bins
    total = x.sum(1)
    squares = torch.linalg.vecdot(x, x)  # one pass: sum of squares
    # Finite sums mean finite entries (a NaN or inf anywhere makes them non-finite): a check on `rows`
    # numbers instead of a pass over all of them (isfinite over the whole batch cost 20x a sum here).
    finite = None if bool(torch.isfinite(total).all()) and bool(torch.isfinite(squares).all()) else torch.isfinite(x)
    if finite is None:  # the usual case: no masking passes
        count = torch.full((rows,), x.shape[1], dtype=x.dtype)
        xs, lo, hi = x, x.amin(1), x.amax(1)  # amin + amax: 25x faster than aminmax(dim=1) on CPU here
    else:
        count = finite.sum(1).to(x.dtype)
        xs = torch.where(finite, x, 0)
        lo = torch.where(finite, x, torch.inf).amin(1)
        hi = torch.where(finite, x, -torch.inf).amax(1)
        total = xs.sum(1)
        squares = torch.linalg.vecdot(xs, xs)
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    width = (hi - lo) / bins_
    scale = torch.where(width > 0, 1 / width, torch.zeros_like(width))
    # Bin of each entry (in place on one float buffer), then offset by its row's first bin.
    # int32, not int64: the conversion is 10x and bincount 2x faster on CPU here.
    position = torch.sub(xs, lo[:, None], out=work.get("position", tuple(xs.shape), xs.dtype))
    position.mul_(scale[:, None]).clamp_(max=bins_ - 1)
    idx = work.get("bin", tuple(xs.shape), torch.int32)
    idx.copy_(position)
    idx += torch.arange(0, rows * bins_, bins_, dtype=torch.int32, device=x.device)[:, None]
    hist = torch.bincount(idx.reshape(-1) if finite is None else idx[finite], minlength=rows * bins_)
    out = torch.cat([torch.stack([mean, std, squares.sqrt(), lo, hi], 1), hist.view(-1, bins_).to(x.dtype)], 1)
    out[count == 0] = float("nan")
    return out
