"""ForwardWrap: a module's `forward` replaced on the instance by a thin wrapper, restored exactly.

    wrap = ForwardWrap(module, lambda args, kwargs, output: ...)   # sees each call's inputs and output
    wrap.restore()                                                  # the instance is as it was

Why not module hooks: any forward hook sends every call of the module down PyTorch's slow path, which
measured +14 % of the lesson's step for its three layers against +1.6 % for wrapping the same three
`forward`s (one process, alternating). Module.__call__ looks `forward` up on the instance, so the wrapper
runs inside __call__: the user's own pre-hooks fire before it and forward hooks after it, in their order,
and a direct `model.forward(x)` call is seen too.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

_MISSING = object()


class ForwardWrap:
    __slots__ = ("module", "_previous", "_restored")

    def __init__(self, module: nn.Module, seen: Callable[[tuple, dict, Any], None],
                 before: Callable[[tuple, dict], Any] | None = None):
        """seen(args, kwargs, output) after each forward; before(args, kwargs) (optional) before it, and its
        result is passed on as `seen`'s first argument instead of args."""
        self.module = module
        self._previous = module.__dict__.get("forward", _MISSING)  # a forward the user set on the instance
        self._restored = False
        inner = module.forward  # the bound method (or the user's instance attribute)

        if before is None:
            def forward(*args, **kwargs):
                output = inner(*args, **kwargs)
                seen(args, kwargs, output)
                return output
        else:
            def forward(*args, **kwargs):
                token = before(args, kwargs)
                output = inner(*args, **kwargs)
                seen(token, kwargs, output)
                return output
        module.__dict__["forward"] = forward

    def restore(self) -> None:
        """Put the instance's `forward` back as it was (safe to call twice)."""
        if self._restored:
            return
        self._restored = True
        if self._previous is _MISSING:
            self.module.__dict__.pop("forward", None)
        else:
            self.module.__dict__["forward"] = self._previous
