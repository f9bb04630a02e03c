"""The floor: the fewest hooks and copies that capture a step's row, with no checks. A reference for the
benchmark, not a recorder: it trusts the loop to be the plain one (one forward, one backward, one step;
no accumulation, no skipped steps, no loss scaling, no parameter changed between steps, no in-place
module), so every row it keeps is right only for such a loop.

What it keeps per step is what the Recorder's full capture keeps, less the targets and the step, epoch
and batch-size counters: the inputs (and the marked samples), each leaf module's output and its gradient
(retain_grad), the model's output, the loss, the lr, the gradients and the parameters before and after
the step (one torch.cat each), staged and stacked into growing lists of tensors, so its memory grows as
the Recorder's does. The Recorder's cost above this row is what its checks and its report cost.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._utils import _flatten_dense_tensors

STAGED = 32


class MinimalCapture:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module):
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.kept: list[torch.Tensor] = []      # stacked columns, kept like the Recorder's log
        self._staged: list[list[torch.Tensor | float]] = []
        self._row: list = []
        self._watched: list[torch.Tensor] = []
        self._samples = None
        self._wrap(model, self._model_forward)
        for name, module in model.named_modules():
            if name and not any(module.children()):
                self._wrap(module, self._layer_forward)
        self._wrap(loss_fn, self._loss_forward)
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)

    @staticmethod
    def _wrap(module: nn.Module, make):
        module.__dict__["forward"] = make(module.forward)

    def _model_forward(self, inner):
        def forward(x):
            self._row = [x] if self._samples is None else [x, self._samples]
            self._watched = []
            out = inner(x)
            self._row.append(out.detach())
            return out
        return forward

    def _layer_forward(self, inner):
        def forward(*args):
            out = inner(*args)
            self._row.append(out.detach())
            out.retain_grad()
            self._watched.append(out)
            return out
        return forward

    def _loss_forward(self, inner):
        def forward(*args):
            loss = inner(*args)
            self._row.append(loss.detach())
            return loss
        return forward

    def mark_samples(self, indices: torch.Tensor) -> None:
        self._samples = indices

    def _before_step(self, optimizer, args, kwargs) -> None:
        row = self._row
        row += [w.grad for w in self._watched]
        row.append(optimizer.param_groups[0]["lr"])
        row.append(_flatten_dense_tensors([p.grad for p in self.params]))
        row.append(torch.cat([p.detach().reshape(-1) for p in self.params]))

    def _after_step(self, optimizer, args, kwargs) -> None:
        self._row.append(torch.cat([p.detach().reshape(-1) for p in self.params]))
        self._staged.append(self._row)
        if len(self._staged) == STAGED:
            staged, self._staged = self._staged, []
            for column in zip(*staged):
                if isinstance(column[0], torch.Tensor):
                    self.kept.append(torch.stack(column))
                else:
                    self.kept.append(torch.tensor(column))
