"""SteppedParams: the parameters an optimizer steps, read from its param_groups at each step.

Nothing is cached but the list itself: `p.data = ...` (renorm, pruning, `.to()`), a new parameter group or a
parameter unfrozen mid-training are all seen at the next step, because the values are read through the
optimizer's own references when its step begins and ends. Each parameter keeps the name the user knows
(`model.named_parameters()`, then `loss_fn.<name>`, then `param_groups.<g>.<i>` for a tensor that belongs
to neither) and a slot in the log's flat rows; a parameter that joins later gets a new slot at the end,
and rows from before it joined hold NaN there.

    params = SteppedParams(model, loss_fn, optimizer)
    added = params.refresh()            # slots of parameters that joined since the last step
    before = params.values()            # every slot's numbers, flat, in slot order
"""

from __future__ import annotations

import operator

import torch
from torch import nn
from torch._utils import _flatten_dense_tensors

from nn_lesson.hooks.snapshot_log import ParamSlot

SHAPE_CHANGED = ("Recorder: parameter {name!r} changed shape from {old} to {new} between steps (its .data was "
                 "replaced); a log has one layout per parameter, so record the training before and after the "
                 "change with two Recorders")


def _stepped(p: torch.Tensor) -> bool:
    """Will the optimizer step it? It steps every parameter that has a gradient, frozen or not."""
    return p.requires_grad or p.grad is not None


def parameter_names(model: nn.Module, loss_fn: object) -> dict[int, str]:
    names = {id(p): n for n, p in model.named_parameters()}
    if isinstance(loss_fn, nn.Module):
        for n, p in loss_fn.named_parameters():
            names.setdefault(id(p), f"loss_fn.{n}")
    return names


class SteppedParams:
    def __init__(self, model: nn.Module, loss_fn: object, optimizer: torch.optim.Optimizer | None):
        self.optimizer = optimizer
        self.names = parameter_names(model, loss_fn)
        self._order = {pid: i for i, pid in enumerate(self.names)}  # the model's order, for new slots too
        self.slots: list[ParamSlot] = []
        self.tensors: list[torch.Tensor] = []   # one per slot: the parameter as the optimizer holds it
        self.present: list[bool] = []           # is the slot's parameter in the optimizer now?
        self._listed: list[torch.Tensor] = []   # the optimizer's parameters, as last read
        self._left_out: list[torch.Tensor] = []  # in the optimizer but frozen (requires_grad=False) when read
        # Flat views of the values, kept only while they still alias the parameter's storage: a view holds
        # its storage alive, so a parameter whose .data was replaced (or converted) can never show the same
        # address, and the view is remade. Changes in place (p.data.clamp_()) are read through the view.
        self._views: list[torch.Tensor | None] = []
        self.width = 0
        self.refresh()

    def refresh(self) -> list[ParamSlot]:
        """Read the optimizer's param_groups again. Returns the slots added (usually none)."""
        if self.optimizer is None:
            return []
        listed = [p for group in self.optimizer.param_groups for p in group["params"]]
        if (len(listed) == len(self._listed) and all(map(operator.is_, listed, self._listed))
                and not any(_stepped(p) for p in self._left_out)):
            return []
        self._listed = listed
        known = {id(t): i for i, t in enumerate(self.tensors)}
        new = [p for p in listed if id(p) not in known and _stepped(p)]
        new.sort(key=lambda p: self._order.get(id(p), len(self._order)))
        added = []
        for p in new:
            if id(p) not in self.names:
                g, i = next((g, i) for g, group in enumerate(self.optimizer.param_groups)
                            for i, q in enumerate(group["params"]) if q is p)
                self.names[id(p)] = f"param_groups.{g}.{i}"
            slot = ParamSlot(self.names[id(p)], tuple(p.shape), self.width)
            self.width += slot.numel
            self.slots.append(slot)
            self.tensors.append(p)
            added.append(slot)
        in_optimizer = {id(p) for p in listed}
        self.present = [id(t) in in_optimizer and _stepped(t) for t in self.tensors]
        self._views = [None] * len(self.tensors)
        self._left_out = [p for p in listed if not _stepped(p)]
        return added

    def values(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """Every slot's current values, flat (read now, through the optimizer's own references). Written
        into `out` (a log row) when its dtype and size fit, and then `out` is returned."""
        views = self._views
        for i, (t, v) in enumerate(zip(self.tensors, views)):
            # A new address means new storage (replaced .data, another dtype or shape): remake the view.
            if v is None or v.data_ptr() != t.data_ptr():
                if t.shape != self.slots[i].shape or not t.is_contiguous():
                    return self._flat([t.detach() for t in self.tensors])
                views[i] = t.detach().view(-1)
        if not all(self.present) or sum(v.numel() for v in views) != self.width:  # a view reshaped in place
            return self._flat([t.detach() for t in self.tensors])
        if out is not None and all(v.dtype == out.dtype for v in views):
            return torch.cat(views, out=out)
        return torch.cat(views)

    def grads(self, out: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
        """Every slot's gradient as the optimizer will read it (a sparse one densified), flat (into `out`
        when it fits, as values()); and the names of the slots whose .grad is None (recorded as NaN: the
        optimizer does not step them)."""
        grads = [t.grad for t in self.tensors]
        if all(self.present) and all(g is not None and g.layout == torch.strided for g in grads):
            if out is not None and all(g.dtype == out.dtype for g in grads) and sum(g.numel() for g in grads) == self.width:
                return torch.cat([g.reshape(-1) for g in grads], out=out), []
            flat = _flatten_dense_tensors(grads)  # the usual case: one call
            if flat.numel() == self.width:
                return flat, []
        grads, missing = [], []
        for slot, t, here in zip(self.slots, self.tensors, self.present):
            g = t.grad
            if g is None:
                if here:
                    missing.append(slot.name)
                grads.append(None)
            else:
                grads.append(g.to_dense() if g.layout != torch.strided else g)
        return self._flat(grads), missing

    def _flat(self, tensors: list[torch.Tensor | None]) -> torch.Tensor:
        parts = []
        for slot, t, here, v in zip(self.slots, self.tensors, self.present, tensors):
            if v is None or not here:
                parts.append(torch.full((slot.numel,), float("nan"), dtype=t.dtype, device=t.device))
                continue
            if v.shape != slot.shape:
                raise RuntimeError(SHAPE_CHANGED.format(name=slot.name, old=slot.shape, new=tuple(v.shape)))
            parts.append(v.reshape(-1))
        with torch.no_grad():
            return torch.cat(parts)  # torch.cat promotes mixed dtypes (a .double()'d layer) exactly

    def not_recorded(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """Parameters the optimizer holds with a gradient that have no slot (never expected; for the report)."""
        known = {id(t) for t in self.tensors}
        return [self.names.get(id(p), f"a {tuple(p.shape)} tensor") for group in optimizer.param_groups
                for p in group["params"] if id(p) not in known and p.grad is not None]
