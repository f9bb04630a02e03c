"""Summary statistics of many captured tensors at once: one row per step of
[mean, std, norm, min, max, histogram counts...], computed for a whole batch of steps in a few passes."""

from __future__ import annotations

import torch

STAT_NAMES = ("mean", "std", "norm", "min", "max")


def row_stats(values: torch.Tensor, bins: int) -> torch.Tensor:
    """values: (steps, ...). Returns (steps, 5 + bins) in values' float dtype: population std; the
    histogram has `bins` even buckets from each row's min to its max (torch.histc's convention).
    Non-finite entries (batch padding) are left out; a row with none left is all NaN."""
    x = values.reshape(values.shape[0], -1)
    if not x.dtype.is_floating_point:
        x = x.to(torch.float32)
    finite = torch.isfinite(x)
    if bool(finite.all()):  # the usual case: no masking passes
        count = torch.full((x.shape[0],), x.shape[1], dtype=x.dtype)
        xs, lo, hi = x, *torch.aminmax(x, dim=1)
    else:
        count = finite.sum(1).to(x.dtype)
        xs = torch.where(finite, x, 0)
        lo = torch.where(finite, x, torch.inf).amin(1)
        hi = torch.where(finite, x, -torch.inf).amax(1)
    total = xs.sum(1)
    squares = torch.linalg.vecdot(xs, xs)  # one pass: sum of squares
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    width = (hi - lo) / bins
    scale = torch.where(width > 0, 1 / width, torch.zeros_like(width))
    idx = ((xs - lo[:, None]) * scale[:, None]).long().clamp_(0, bins - 1)
    idx += torch.arange(x.shape[0], device=x.device)[:, None] * bins
    hist = torch.bincount((idx if bool(finite.all()) else idx[finite]).reshape(-1), minlength=x.shape[0] * bins)
    out = torch.cat([torch.stack([mean, std, squares.sqrt(), lo, hi], 1), hist.view(-1, bins).to(x.dtype)], 1)
    out[count == 0] = float("nan")
    return out
