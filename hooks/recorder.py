"""Recorder: attach hooks at known places, copy what passes into a SnapshotLog, detach everything on exit.

    with Recorder(model, optimizer, loss_fn, steps_per_epoch=len(loader)) as rec:
        for x, y in loader:                     # the ordinary PyTorch loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
    rec.log[0].grads["hidden.weight"]

Where each number comes from (a step ends at optimizer.step()):
  model forward pre-hook      inputs                  (a new forward restarts the pending step)
  leaf module forward hooks   activation of each leaf module, plus output.register_hook for its gradient
  model forward hook          outputs
  loss module forward hook    targets, loss
  optimizer step pre-hook     parameters before, their gradients (final: .grad as the optimizer sees it)
  optimizer step post-hook    parameters after; the step is committed
Parameter gradients are read in the optimizer's pre-step hook rather than in per-parameter
post-accumulate-grad hooks: it is the gradient the optimizer actually uses (after any accumulation
over several backward calls or clipping) and costs one copy per step instead of one per parameter.
Forwards run under torch.no_grad() (evaluation) are not steps and are skipped; without an optimizer
every forward is recorded as a forward-only row.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from hooks.policy import CapturePolicy
from hooks.snapshot_log import STAT_NAMES, ParamSlot, SnapshotLog

_ACTIVE_ATTR = "_nn_lesson_recorder"


class Recorder:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, *, steps_per_epoch: int | None = None,
                 policy: CapturePolicy | None = None, meta: dict[str, Any] | None = None):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.steps_per_epoch = steps_per_epoch
        self.policy = policy or CapturePolicy.full()
        self._handles: list[RemovableHandle] = []
        self._params = self._trainable(model, optimizer)
        self._leaves = [(name, m) for name, m in model.named_modules() if name and not any(m.children())]
        slots, offset = [], 0
        for name, p in self._params:
            slots.append(ParamSlot(name, tuple(p.shape), offset))
            offset += p.numel()
        self.log = SnapshotLog(slots, [name for name, _ in self._leaves], meta,
                               self.policy.bins if self.policy.stats_only else 0)
        if self.policy.every > 1 or self.policy.stats_only:
            self.log.step_index = torch.zeros(0, dtype=torch.int64)
        self._step = 0          # optimizer steps taken since recording began
        self._row = 0           # the row the pending step writes to
        self._capturing = False  # is the current forward the one of a step we keep?
        self._called: set[str] = set()
        self._before: torch.Tensor | None = None  # stats policy: flat weights before the step

    @staticmethod
    def _trainable(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[tuple[str, nn.Parameter]]:
        if optimizer is None:
            return []
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return [(n, p) for n, p in model.named_parameters() if id(p) in in_optimizer and p.requires_grad]

    # ---- attach / detach ----
    def __enter__(self) -> "Recorder":
        if getattr(self.model, _ACTIVE_ATTR, None) is not None:
            raise RuntimeError("this model already has an active Recorder; nested Recorders on one model are "
                               "not supported (exit the first `with` block before starting another)")
        self.model.__dict__[_ACTIVE_ATTR] = self
        try:
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook this recorder attached (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.model.__dict__.pop(_ACTIVE_ATTR, None)

    def _attach(self) -> None:
        add = self._handles.append
        add(self.model.register_forward_pre_hook(self._on_model_input))
        for name, module in self._leaves:
            add(module.register_forward_hook(self._leaf_hook(name)))
        add(self.model.register_forward_hook(self._on_model_output))
        if isinstance(self.loss_fn, nn.Module):
            add(self.loss_fn.register_forward_hook(self._on_loss))
        if self.optimizer is not None:
            add(self.optimizer.register_step_pre_hook(self._on_step_begin))
            add(self.optimizer.register_step_post_hook(self._on_step_end))

    def mark_samples(self, indices: torch.Tensor | list[int]) -> None:
        """Optional: say which samples (dataset row numbers) the current step uses, e.g. 0 for Sarah."""
        # Usually called before the forward, so it writes to the pending row whether or not it has begun.
        if not self.policy.stats_only and self._step % self.policy.every == 0:
            ids = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
            self.log.column("samples", ids).write(self._row, ids)

    # ---- hooks ----
    def _keep(self, name: str, value: torch.Tensor) -> None:
        if self.policy.stats_only:
            self._keep_stats(name, value)
        else:
            self.log.column(name, value).write(self._row, value.detach())

    def _keep_stats(self, name: str, value: torch.Tensor) -> None:
        v = value.detach().reshape(-1).to(torch.float64 if value.dtype == torch.float64 else torch.float32)
        col = self.log.column(f"stats:{name}", v, (len(STAT_NAMES) + self.policy.bins,))
        row = col.row(self._row)
        if v.numel() == 0:
            row.fill_(float("nan"))
            return
        std, mean = torch.std_mean(v, correction=0)
        lo, hi = torch.aminmax(v)
        torch.stack([mean, std, torch.linalg.vector_norm(v), lo, hi], out=row[: len(STAT_NAMES)])
        torch.histc(v, self.policy.bins, out=row[len(STAT_NAMES):])

    def _on_model_input(self, module: nn.Module, args: tuple) -> None:
        self._called.clear()
        keep = self._step % self.policy.every == 0
        self._capturing = keep and (torch.is_grad_enabled() or self.optimizer is None)
        if not self._capturing:
            return
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not None:
            if not self.policy.stats_only:
                self._keep("inputs", x)
            batch = torch.tensor(x.shape[0] if x.dim() > 0 else 1)
            self.log.column("batch_size", batch).row(self._row).fill_(batch)

    def _leaf_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self._capturing or not isinstance(output, torch.Tensor):
                return
            if name in self._called:
                raise RuntimeError(
                    f"Recorder: module {name!r} ran twice in one forward pass; the recorder keeps one "
                    f"activation per module per step. Give each use its own module (e.g. copy.deepcopy) "
                    f"or record without this model's reuse.")
            self._called.add(name)
            self._keep(f"act:{name}", output)
            if output.requires_grad:
                row = self._row
                output.register_hook(lambda grad: self._on_act_grad(name, row, grad))
        return hook

    def _on_act_grad(self, name: str, row: int, grad: torch.Tensor) -> None:
        if row == self._row and self._capturing:  # a later forward took over this row: its grads count
            self._keep(f"act_grad:{name}", grad)

    def _on_model_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._capturing:
            return
        if isinstance(output, torch.Tensor):
            self._keep("outputs", output)
        if self.optimizer is None:
            self._commit()

    def _on_loss(self, module: nn.Module, args: tuple, loss: Any) -> None:
        if not self._capturing or not isinstance(loss, torch.Tensor):
            return
        if len(args) > 1 and isinstance(args[1], torch.Tensor) and not self.policy.stats_only:
            self._keep("targets", args[1])
        self.log.column("loss", loss.detach().reshape(())).row(self._row).copy_(loss.detach())

    def _flat(self, tensors: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        return torch.cat([t.detach().reshape(-1) for t in tensors], out=out)

    def _on_step_begin(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if not self._params or not self._capturing:
            return
        params = [p for _, p in self._params]
        grads = [p.grad if p.grad is not None else torch.full_like(p, float("nan")) for p in params]
        self.log.column("lr", torch.tensor(0.0, dtype=torch.float64)).row(self._row).fill_(
            optimizer.param_groups[0]["lr"])
        if self.policy.stats_only:
            self._before = self._flat(params, torch.empty(self.log.params[-1].offset + params[-1].numel(),
                                                          dtype=params[0].dtype))
            for (name, p), g in zip(self._params, grads):
                self._keep_stats(f"{name}:value", p)
                self._keep_stats(f"{name}:grad", g)
            return
        n = sum(p.numel() for p in params)
        for which, tensors in (("before", params), ("grad", grads)):
            self._flat(tensors, self.log.column(f"param_{which}", params[0], (n,)).row(self._row))

    def _on_step_end(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if self._capturing:
            params = [p for _, p in self._params]
            if self.policy.stats_only and params:
                after = self._flat(params, torch.empty_like(self._before))
                update = after - self._before
                for slot in self.log.params:
                    self._keep_stats(f"{slot.name}:update", update[slot.offset: slot.offset + slot.numel])
            elif params:
                n = self.log.columns["param_before"].row_shape[0]
                self._flat(params, self.log.column("param_after", params[0], (n,)).row(self._row))
            self._commit()
        else:
            self._step += 1
        self._capturing = False

    def _commit(self) -> None:
        epoch = self._step // self.steps_per_epoch if self.steps_per_epoch else 0
        self.log.column("epoch", torch.tensor(0)).row(self._row).fill_(epoch)
        if self.log.step_index is not None:
            if self._row >= len(self.log.step_index):
                grown = torch.empty(max(256, 2 * len(self.log.step_index)), dtype=torch.int64)
                grown[: self._row] = self.log.step_index[: self._row]
                self.log.step_index = grown
            self.log.step_index[self._row] = self._step
        self._row += 1
        self._step += 1
        self.log.steps = self._row
        self._capturing = False
