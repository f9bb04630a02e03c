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
  leaf module forward hooks   activation of each leaf module; its gradient via output.retain_grad(), read
                              at the step (output.register_hook when copying in the hook, see _copy_now)
  model forward hook          outputs
  loss module forward hook    targets, loss
  optimizer step pre-hook     parameters before, their gradients (final: .grad as the optimizer sees it)
  optimizer step post-hook    parameters after; the step is committed
Parameter gradients are read in the optimizer's pre-step hook rather than in per-parameter
post-accumulate-grad hooks: it is the gradient the optimizer actually uses (after any accumulation
over several backward calls or clipping) and costs one copy per step instead of one per parameter.
Forwards run under torch.no_grad() (evaluation) are not steps and are skipped; without an optimizer
every forward is recorded as a forward-only row. While recording, retain_grad() leaves `.grad` set on
the leaf modules' outputs of the current step; nothing else about the model or its numbers changes.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from nn_lesson.hooks.policy import CapturePolicy
from nn_lesson.hooks.snapshot_log import ParamSlot, SnapshotLog

_ACTIVE_ATTR = "_nn_lesson_recorder"


class Recorder:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, *, steps_per_epoch: int | None = None,
                 policy: CapturePolicy | None = None):
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
        self.log = SnapshotLog(slots, [name for name, _ in self._leaves], self.policy.bins if self.policy.stats_only else 0)
        self._step = 0           # optimizer steps taken since recording began
        self._row = 0            # the row the pending step will be committed to
        self._capturing = False  # is the current forward the one of a step we keep?
        self._called: set[str] = set()
        # Flat views of the parameters, made once: the optimizer updates them in place, so a step's
        # before/after copy is one torch.cat.
        self._flat_params = [p.detach().view(-1) if p.is_contiguous() else None for _, p in self._params]
        self._numel = offset
        # Hooks keep detached references (and version counters) of the step's fresh tensors, and the log
        # stacks (or summarises) a batch of steps into its columns at once. Parameters, which the optimizer
        # changes in place, are copied (one cat) when seen. A model with in-place modules
        # (ReLU(inplace=True)) changes outputs after the hook has seen them, so its values are cloned in
        # the hook instead, and activation gradients come from tensor hooks rather than retain_grad.
        self._copy_now = any(getattr(m, "inplace", False) for _, m in self._leaves)
        self._pending: list[tuple[str, Any, int | None]] = []
        self._grad_watch: list[tuple[str, torch.Tensor]] = []
        self._samples: torch.Tensor | None = None
        self._batch = 1
        self._lr = 0.0

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
        self._pending.clear()
        self._grad_watch.clear()  # drop references to the last forward's tensors
        self.model.__dict__.pop(_ACTIVE_ATTR, None)
        self.log.flush()

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
        """Optional: say which samples (dataset row numbers) the next step uses, e.g. 0 for Sarah."""
        if not self.policy.stats_only:
            ids = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
            self._samples = ids.clone() if ids is indices else ids

    def pending(self, name: str) -> torch.Tensor | None:
        """A value the current, uncommitted step has captured so far (e.g. "act:hidden"), or None."""
        return next((v for n, v, _ in self._pending if n == name), None)

    # ---- hooks ----
    def _keep(self, name: str, value: torch.Tensor) -> None:
        if self._copy_now:
            v = value.detach().clone()
        else:
            v = value.detach() if value.requires_grad else value
        self._pending.append((name, v, v._version))

    def _on_model_input(self, module: nn.Module, args: tuple) -> None:
        self._called.clear()
        self._pending.clear()  # a new forward restarts the pending step
        self._grad_watch.clear()
        keep = self._step % self.policy.every == 0
        self._capturing = keep and (torch.is_grad_enabled() or self.optimizer is None)
        if not self._capturing:
            return
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not None:
            if not self.policy.stats_only:
                self._keep("inputs", x)
            self._batch = x.shape[0] if x.dim() > 0 else 1

    def _leaf_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self._capturing or not isinstance(output, torch.Tensor):
                return
            if name in self._called:
                raise RuntimeError(
                    f"Recorder: module {name!r} ran twice in one forward pass; the recorder keeps one "
                    f"activation per module per step. Give each use its own module (e.g. copy.deepcopy).")
            self._called.add(name)
            self._keep(f"act:{name}", output)
            if not output.requires_grad:
                return
            if not self._copy_now:
                output.retain_grad()  # a C++ hook: no Python call during backward; read at the step
                self._grad_watch.append((name, output))
            else:
                row = self._row
                output.register_hook(lambda grad: self._on_act_grad(name, row, grad))
        return hook

    def _on_act_grad(self, name: str, row: int, grad: torch.Tensor) -> None:
        if row == self._row and self._capturing:  # a later forward took over this row: its grads count
            self._keep(f"act_grad:{name}", grad)

    def _on_model_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        if not self._capturing:
            return
        if isinstance(output, torch.Tensor) and not self.policy.stats_only:
            self._keep("outputs", output)
        if self.optimizer is None:
            self._commit()

    def _on_loss(self, module: nn.Module, args: tuple, loss: Any) -> None:
        if not self._capturing or not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            return
        if len(args) > 1 and isinstance(args[1], torch.Tensor) and not self.policy.stats_only:
            self._keep("targets", args[1])
        self._keep("loss", loss)  # 0-d: kept as a value under every policy

    def _weights(self) -> list[torch.Tensor]:
        return [v if v is not None else p.detach().reshape(-1) for v, (_, p) in zip(self._flat_params, self._params)]

    def _on_step_begin(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if not self._capturing:
            return
        self._lr = optimizer.param_groups[0]["lr"]
        for name, output in self._grad_watch:
            if output.grad is not None:
                self._keep(f"act_grad:{name}", output.grad)
        if not self._params:
            return
        grads = [p.grad if p.grad is not None else torch.full_like(p, float("nan")) for _, p in self._params]
        before, grad = torch.cat(self._weights()), torch.cat([g.reshape(-1) for g in grads])  # .grad needs no detach
        self._pending += [("param_before", before, None), ("param_grad", grad, None)]

    def _on_step_end(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if not self._capturing:
            self._step += 1
            return
        if self._params:
            self._pending.append(("param_after", torch.cat(self._weights()), None))
        self._commit()

    def _commit(self) -> None:
        epoch = self._step // self.steps_per_epoch if self.steps_per_epoch else 0
        items = self._pending
        items += [("step", self._step, None), ("epoch", epoch, None), ("batch_size", self._batch, None)]
        if self.optimizer is not None:
            items.append(("lr", float(self._lr), None))
        if self._samples is not None:
            items.append(("samples", self._samples, None))
            self._samples = None
        self.log.stage_step(self._row, items)
        self._pending = []
        self._grad_watch = []
        self._row += 1
        self._step += 1
        self._capturing = False
