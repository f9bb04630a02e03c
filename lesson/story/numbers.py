"""How every number shown to a learner is written, in one place, so text, diagram and terminal agree.

Four decimals for the numbers of a lesson run; numbers too large for that (a diverging run's loss) or too small to
show in four decimals (a change of 3×10⁻⁶) in scientific notation, 1.373×10²⁹, so that nothing non-zero prints as
0.0000 and no number runs to thirty digits."""

from __future__ import annotations

import math

import torch

DIGITS = 4
LARGE = 1e6          # from here on, scientific notation
SMALL = 10 ** -DIGITS / 2   # below this a non-zero number prints as 0.0000 in DIGITS decimals
SUPERSCRIPT = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")


def scientific(x: float, significant: int = 4) -> str:
    """1.373×10²⁹, -6.482×10⁻⁷."""
    mantissa, exponent = f"{x:.{significant - 1}e}".split("e")
    return f"{mantissa}×10{str(int(exponent)).translate(SUPERSCRIPT)}"


def num(x: float | torch.Tensor, digits: int = DIGITS) -> str:
    """A signed-when-negative number with `digits` decimals: 0.4000, -0.6000; 1.373×10²⁹ when it is that large."""
    v = float(x)
    if math.isfinite(v) and abs(v) >= LARGE:
        return scientific(v)
    return f"{v:.{digits}f}"


def signed(x: float | torch.Tensor, digits: int = DIGITS) -> str:
    """Always with its sign: +0.4000, -0.6000 (weights and updates, as the seed lesson shows them)."""
    v = float(x)
    if math.isfinite(v) and abs(v) >= LARGE:
        return ("+" if v > 0 else "") + scientific(v)
    return f"{v:+.{digits}f}"


def amount(x: float | torch.Tensor) -> str:
    """Like num(), but a non-zero number too small for 4 decimals is written in scientific notation too (a change
    of a loss, a confidence near 0): never 0.0000 for something that is not 0."""
    v = float(x)
    if math.isfinite(v) and v != 0 and abs(v) < SMALL:
        return scientific(v, 2)
    return num(v)


def signed_amount(x: float | torch.Tensor) -> str:
    """signed() with amount()'s rule for the very small: +3.2×10⁻⁶, -0.0477, +0 for exactly nothing."""
    v = float(x)
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return num(v)
    if math.isfinite(v) and abs(v) < SMALL:
        return ("+" if v > 0 else "") + scientific(v, 2)
    return signed(v)


def pct(x: float | torch.Tensor, digits: int = 1) -> str:
    """A fraction 0..1 as a percentage: 0.9213 -> 92.1%."""
    return f"{100 * float(x):.{digits}f}%"
