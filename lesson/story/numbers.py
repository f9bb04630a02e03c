"""How every number shown to a learner is written, in one place, so text, diagram and terminal agree."""

from __future__ import annotations

import torch

DIGITS = 4


def num(x: float | torch.Tensor, digits: int = DIGITS) -> str:
    """A signed-when-negative number with `digits` decimals: 0.4000, -0.6000."""
    return f"{float(x):.{digits}f}"


def signed(x: float | torch.Tensor, digits: int = DIGITS) -> str:
    """Always with its sign: +0.4000, -0.6000 (weights and updates, as the seed lesson shows them)."""
    return f"{float(x):+.{digits}f}"


def pct(x: float | torch.Tensor, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage: 0.9213 -> 92.1%."""
    return f"{100 * float(x):.{digits}f}%"
