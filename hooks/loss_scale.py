"""The loss scale of a step taken by GradScaler, found where GradScaler takes it.

GradScaler never tells the optimizer it exists: `scaler.step(opt)` unscales the gradients (unless the
user's `scaler.unscale_(opt)` already did) and then calls `opt.step()` from its own `_maybe_opt_step`, or
skips the call when it found inf/NaN. So the optimizer's step pre-hook looks a few frames up for that
caller: the gradients it is about to read are unscaled, while the backward that made them (the loss,
the activation gradients) ran on the loss times `scaler.get_scale()`, which stays the same until
`scaler.update()` after the step.

    scale = loss_scale_of_this_step()   # None: the step was not taken by a GradScaler
"""

from __future__ import annotations

import sys

from torch.amp import GradScaler

# Frames between the pre-hook and GradScaler's call: the hook, Optimizer's profiling wrapper, then the caller.
_FRAMES_UP = 6
_CALLER = GradScaler._maybe_opt_step.__code__


def stepping_scaler() -> GradScaler | None:
    """The GradScaler whose step() is calling optimizer.step() now, or None."""
    frame = sys._getframe(2)
    for _ in range(_FRAMES_UP):
        if frame is None:
            return None
        if frame.f_code is _CALLER:
            scaler = frame.f_locals.get("self")
            return scaler if isinstance(scaler, GradScaler) else None
        frame = frame.f_back
    return None


def loss_scale_of_this_step() -> float | None:
    scaler = stepping_scaler()
    return None if scaler is None or not scaler.is_enabled() else float(scaler.get_scale())
