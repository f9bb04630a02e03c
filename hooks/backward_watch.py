"""BackwardWatch: see the tensor that `loss.backward()` starts from, so a functional loss
(F.cross_entropy, F.mse_loss, any expression) is recorded without a loss module.

Nothing in torch's hook API reports the root of a backward pass, and the loss is downstream of every
module, so no module hook sees it. A TorchFunctionMode (torch.overrides, public) does: while it is
active, `Tensor.backward` is dispatched through `__torch_function__` with the root as `args[0]`.

A mode puts every torch call in Python (~5 µs each), so the Recorder keeps it active only from the end
of a training forward until the optimizer step (or the next forward): the loss expression, the
backward call and whatever the loop does before `step()`. It is used only when no nn.Module loss was
given; a loss module's own forward hook is cheaper.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.overrides import TorchFunctionMode


class BackwardWatch(TorchFunctionMode):
    def __init__(self, on_backward: Callable[[torch.Tensor], None]):
        super().__init__()
        self.on_backward = on_backward
        self.active = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func is torch.Tensor.backward:  # after it returned: the gradients are in place (and all-reduced)
            self.on_backward(args[0])
        return result

    def start(self) -> None:
        if not self.active:
            self.__enter__()
            self.active = True

    def stop(self) -> None:
        """Leave the mode. Safe to call when not active. Called only from hooks and close(), never from
        inside __torch_function__ (where torch has taken the mode off its stack for the call)."""
        if self.active:
            self.active = False
            self.__exit__(None, None, None)
