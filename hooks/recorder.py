"""Recorder: attach hooks at known places, copy what passes into a SnapshotLog, detach everything on exit.

    with Recorder(model, optimizer, loss_fn, steps_per_epoch=len(loader)) as rec:
        for x, y in loader:                     # the ordinary PyTorch loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)         # or F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
    rec.log[0].grads["hidden.weight"]; rec.report()

A step ends at optimizer.step(). Its row holds ONE forward: the step's training forward, the first
grad-enabled forward of the step whose outputs backward() reached. Other forwards are never recorded
in its place: under no_grad/inference_mode (evaluation), forwards no backward reached, and any further
forward of the step (gradient accumulation, closure re-evaluations) are counted in rec.report().

Where each number comes from:
  model forward pre-hook        inputs; decides whether this forward is the step's training forward
  leaf module forward hooks     each call's output (a module called twice: `act`, `act#1`, ...); its
                                gradient via output.retain_grad(), read at the step
  model forward hook            outputs (a tensor, or each tensor of a tuple/list/dict: outputs:<key>)
  loss module forward hook      targets, loss (when loss_fn is an nn.Module)
  BackwardWatch                 loss = the tensor backward() started from (no loss module given)
  post-accumulate-grad hooks    each parameter's gradient norm after backward: the norm before clipping
  optimizer step pre-hook       lr, parameters before, their gradients as the optimizer sees them
                                (accumulated, clipped); with a closure (LBFGS) these are read when its
                                first evaluation returns: the gradient at the step's starting point
  optimizer step post-hook      parameters after; the step is committed
Refusals (one line, at once): a torch.compile'd model; nested Recorders on one model; reading the log
of a Recorder that was never entered.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from nn_lesson.hooks.backward_watch import BackwardWatch
from nn_lesson.hooks.policy import CapturePolicy
from nn_lesson.hooks.report import Report
from nn_lesson.hooks.snapshot_log import ParamSlot, SnapshotLog

_ACTIVE_ATTR = "_nn_lesson_recorder"

NO_GRAD = "under torch.no_grad(): evaluation, not a step"
INFERENCE = "under torch.inference_mode(): evaluation, not a step"
EXTRA = "another forward in the same step (gradient accumulation, a closure re-evaluation, a second input): the step's first trained forward is kept"
UNTRAINED = "grad enabled but backward() never reached its output before the next forward or step"
COMPILED = ("Recorder: cannot record a torch.compile'd model (hooks are compiled away or break the graph); "
            "record the plain module (e.g. Recorder(model._orig_mod, opt)) and call it uncompiled while recording")


class _Forward:
    """One grad-enabled forward that may become its step's row."""
    __slots__ = ("items", "watch", "outs", "calls", "trained", "has_loss")

    def __init__(self):
        self.items: list[tuple[str, Any, int | None]] = []
        self.watch: list[tuple[str, torch.Tensor]] = []   # leaf outputs with retain_grad, read at the step
        self.outs: list[torch.Tensor] = []                # outputs that need grad: did backward reach them?
        self.calls: dict[str, int] = {}
        self.trained = False
        self.has_loss = False


def _world_rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class Recorder:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, *, steps_per_epoch: int | None = None,
                 policy: CapturePolicy | None = None):
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's wrapper module
            raise RuntimeError(COMPILED)
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.steps_per_epoch = steps_per_epoch
        self.policy = policy or CapturePolicy.full()
        self.rank = _world_rank()
        self.distributed = isinstance(model, nn.parallel.DistributedDataParallel)
        self._handles: list[RemovableHandle] = []
        self._capture: list[RemovableHandle] = []  # see _attach_capture
        self._params = self._trainable(model, optimizer)
        self._leaves = [(name, m) for name, m in model.named_modules() if name and not any(m.children())]
        slots, offset = [], 0
        for name, p in self._params:
            slots.append(ParamSlot(name, tuple(p.shape), offset))
            offset += p.numel()
        self._log = SnapshotLog(slots, [name for name, _ in self._leaves],
                                self.policy.bins if self.policy.stats_only else 0)
        self._layers = set(self._log.layers)
        self._started = False
        self._step = 0                        # optimizer steps taken since recording began
        self._row = 0                         # the row the pending step will be committed to
        self._fwd: _Forward | None = None     # the pending step's training forward (candidate until trained)
        self._current: _Forward | None = None  # the forward now running, if it is being captured
        self._step_items: list[tuple[str, Any, int | None]] = []
        self._in_step = False
        # Flat views of the parameters, made once: the optimizer updates them in place, so a step's
        # before/after copy is one torch.cat.
        self._param_list = [p for _, p in self._params]
        self._flat_params = [p.detach().view(-1) if p.is_contiguous() else None for _, p in self._params]
        # A model with in-place modules (ReLU(inplace=True)) changes outputs after the hook has seen them,
        # so its values are cloned in the hook, and activation gradients come from tensor hooks.
        self._copy_now = any(getattr(m, "inplace", False) for _, m in self._leaves)
        # The gradient norm before clipping. Post-accumulate-grad hooks note each .grad and its version
        # after backward; at the step, an unchanged .grad means the recorded gradient is the one backward
        # left (the log computes its norm). Once a step finds .grad changed in place (clipping), the hooks
        # compute each norm as backward finishes (~7 µs a parameter, so only then). Under DDP these hooks
        # see the local gradient, not the all-reduced one, so nothing is claimed there.
        self._after_backward: list[tuple[torch.Tensor, int] | None] = [None] * len(self._params)
        self._norms: list[torch.Tensor | None] = [None] * len(self._params)
        self._eager_norms = False
        self._leaf_hooks = {name: self._leaf_hook(name) for name, _ in self._leaves}
        self._norm_hooks = [self._norm_hook(i) for i in range(len(self._params))]
        self._watch = BackwardWatch(self._on_backward) if not isinstance(loss_fn, nn.Module) else None
        self._samples: torch.Tensor | None = None
        self._batch = 1
        # For the report.
        self._skipped: Counter[str] = Counter()
        self._calls: dict[str, int] = {}
        self._last_calls: dict[str, int] = {}
        self._not_seen: dict[str, None] = {}

    @staticmethod
    def _trainable(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> list[tuple[str, nn.Parameter]]:
        if optimizer is None:
            return []
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return [(n, p) for n, p in model.named_parameters() if id(p) in in_optimizer and p.requires_grad]

    # ---- attach / detach ----
    @property
    def log(self) -> SnapshotLog:
        if not self._started:
            raise RuntimeError("Recorder: nothing was recorded because the Recorder was never entered; use "
                               "`with Recorder(model, opt) as rec:` around the loop (or rec.start() ... rec.close())")
        return self._log

    def start(self) -> "Recorder":
        """Attach the hooks (what `with` does); pair with close()."""
        return self.__enter__()

    def __enter__(self) -> "Recorder":
        if getattr(self.model, _ACTIVE_ATTR, None) is not None:
            raise RuntimeError("Recorder: this model already has an active Recorder; nested Recorders on one "
                               "model are not supported (exit the first `with` block before starting another)")
        self.model.__dict__[_ACTIVE_ATTR] = self
        self._started = True
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
        if self._watch is not None:
            self._watch.stop()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._detach_capture()
        self._fwd = self._current = None  # drop references to the last forward's tensors
        self._step_items = []
        self.model.__dict__.pop(_ACTIVE_ATTR, None)
        self._log.flush()

    def _attach(self) -> None:
        add = self._handles.append
        add(self.model.register_forward_pre_hook(self._on_model_input))
        if self.optimizer is not None:
            add(self.optimizer.register_step_pre_hook(self._on_step_begin))
            add(self.optimizer.register_step_post_hook(self._on_step_end))
        self._attach_capture()

    def _attach_capture(self) -> None:
        """The hooks that copy a step's numbers. Under every_k(k) they are attached only from the end of
        the step before a kept one to the end of the kept step: a skipped step runs every module on
        PyTorch's hook-free path and costs the Recorder three Python calls (model pre-hook, step hooks)."""
        if self._capture:
            return
        add = self._capture.append
        for name, module in self._leaves:
            add(module.register_forward_hook(self._leaf_hooks[name]))
        add(self.model.register_forward_hook(self._on_model_output))
        if isinstance(self.loss_fn, nn.Module):
            add(self.loss_fn.register_forward_hook(self._on_loss))
        if self.optimizer is not None and not self.distributed:
            for i, (_, p) in enumerate(self._params):
                add(p.register_post_accumulate_grad_hook(self._norm_hooks[i]))

    def _detach_capture(self) -> None:
        for handle in self._capture:
            handle.remove()
        self._capture.clear()

    def mark_samples(self, indices: torch.Tensor | list[int]) -> None:
        """Optional: say which samples (dataset row numbers) the next step uses, e.g. 0 for Sarah."""
        if not self.policy.stats_only:
            ids = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
            self._samples = ids.clone() if ids is indices else ids

    def pending(self, name: str) -> torch.Tensor | None:
        """A value the current, uncommitted step has captured so far (e.g. "act:hidden"), or None."""
        fwd = self._fwd
        items = (fwd.items if fwd is not None else []) + self._step_items
        return next((v for n, v, _ in items if n == name), None)

    def report(self) -> Report:
        """Which modules ran and how often, which forwards were skipped and why, what could not be seen."""
        not_seen = list(self._not_seen)
        if self.optimizer is not None and self._started and self._log.steps and not self._log.has("loss"):
            not_seen.append("the loss (no nn.Module loss_fn and no Tensor.backward() call seen)")
        return Report(self._step, self._log.steps, self.policy.every,
                      dict(self._calls), tuple(n for n, _ in self._leaves if n not in self._calls),
                      dict(self._skipped), tuple(not_seen))

    def _unseen(self, what: str) -> None:
        self._not_seen.setdefault(what)

    # ---- forward hooks ----
    def _keep(self, items: list, name: str, value: torch.Tensor) -> None:
        if self._copy_now:
            v = value.detach().clone()
        else:
            v = value.detach() if value.requires_grad else value
        items.append((name, v, v._version))

    def _on_model_input(self, module: nn.Module, args: tuple) -> None:
        """Forward pre-hook of the model, hook(module, args): fires before every forward."""
        if torch.compiler.is_compiling():
            raise RuntimeError(COMPILED)
        self._current = None
        if self.optimizer is not None and (torch.is_inference_mode_enabled() or not torch.is_grad_enabled()):
            self._skipped[INFERENCE if torch.is_inference_mode_enabled() else NO_GRAD] += 1
            return  # an evaluation never clears the pending training forward, nor stops its loss watch
        if self._watch is not None:
            self._watch.stop()  # the watch covers loss + backward of the last training forward only
        if self.optimizer is not None:
            fwd = self._fwd
            if fwd is not None and (fwd.trained or self._reached(fwd)):
                fwd.trained = True
                self._skipped[EXTRA] += 1
                return
            if fwd is not None:
                self._skipped[UNTRAINED] += 1
                self._fwd = None
        if self._step % self.policy.every:
            if self.optimizer is None:
                self._step += 1  # without an optimizer every forward is a step
            return  # a step the policy does not keep
        fwd = self._current = self._fwd = _Forward()
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if x is not None:
            if not self.policy.stats_only:
                self._keep(fwd.items, "inputs", x)
            self._batch = x.shape[0] if x.dim() > 0 else 1
        else:
            self._unseen("inputs (the model's first argument is not a tensor)")

    def _leaf_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            """Forward hook of a leaf module, hook(module, args, output): fires after each of its calls."""
            fwd = self._current
            if fwd is None:
                return
            calls = fwd.calls
            if name in calls:  # a module called again in this forward: its own name, act#1, act#2, ...
                key = f"{name}#{calls[name]}"
                calls[name] += 1
                if key not in self._layers:
                    self._layers.add(key)
                    self._log.layers.append(key)
            else:
                key = name
                calls[name] = 1
            if not isinstance(output, torch.Tensor):
                self._unseen(f"activation of {key} (returns {type(output).__name__}, not a tensor)")
                return
            self._keep(fwd.items, act_name if key is name else f"act:{key}", output)
            if not output.requires_grad:
                return
            if not self._copy_now:
                output.retain_grad()  # a C++ hook: no Python call during backward; read at the step
                fwd.watch.append((grad_name if key is name else f"act_grad:{key}", output))
            else:
                output.register_hook(lambda grad: self._on_act_grad(fwd, key, grad))
        act_name, grad_name = f"act:{name}", f"act_grad:{name}"
        return hook

    def _on_act_grad(self, fwd: _Forward, key: str, grad: torch.Tensor) -> None:
        """Tensor hook on an activation, hook(grad): fires when backward computes its gradient."""
        fwd.trained = True
        if fwd is self._fwd and not any(n == f"act_grad:{key}" for n, _, _ in fwd.items):
            self._keep(fwd.items, f"act_grad:{key}", grad)

    def _on_model_output(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Forward hook of the model, hook(module, args, output): fires after every forward."""
        fwd, self._current = self._current, None
        if fwd is None:
            return
        if fwd.calls != self._last_calls:  # usually the same modules, the same number of times
            self._last_calls = fwd.calls
            for name, calls in fwd.calls.items():
                self._calls[name] = max(self._calls.get(name, 0), calls)
        named = ([("outputs", output)] if isinstance(output, torch.Tensor) else
                 [(f"outputs:{k}", v) for k, v in output.items()] if isinstance(output, dict) else
                 [(f"outputs:{i}", v) for i, v in enumerate(output)] if isinstance(output, (tuple, list)) else [])
        for name, value in named:
            if not isinstance(value, torch.Tensor):
                continue
            if not self.policy.stats_only:
                self._keep(fwd.items, name, value)
            if value.requires_grad:
                if not value.retains_grad:
                    value.retain_grad()
                fwd.outs.append(value)
        if self.optimizer is None:
            self._commit(fwd.items)
            self._fwd = None
            self._step += 1
        elif self._watch is not None and not self._in_step and torch.is_grad_enabled():
            self._watch.start()

    def _on_loss(self, module: nn.Module, args: tuple, loss: Any) -> None:
        """Forward hook of an nn.Module loss, hook(module, args, loss)."""
        fwd = self._fwd
        if fwd is None or fwd.has_loss or fwd.trained or not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            return
        if not loss.requires_grad or self._current is not None:  # an evaluation loss, or one inside the model
            return
        if len(args) > 1 and isinstance(args[1], torch.Tensor) and not self.policy.stats_only:
            self._keep(fwd.items, "targets", args[1])
        self._keep(fwd.items, "loss", loss)  # 0-d: kept as a value under every policy
        fwd.has_loss = True

    def _on_backward(self, root: torch.Tensor) -> None:
        """BackwardWatch callback: `root.backward()` has just returned."""
        fwd = self._fwd
        if fwd is None or fwd.has_loss or not self._reached(fwd):
            return
        fwd.trained = True
        if root.dim() == 0:
            self._keep(fwd.items, "loss", root)
            fwd.has_loss = True
        else:
            self._unseen("the loss (backward() started from a tensor that is not a single number)")

    @staticmethod
    def _reached(fwd: _Forward) -> bool:
        """Did a backward pass reach this forward? retain_grad() left .grad on what it reached."""
        if fwd.trained:
            return True
        if not fwd.outs:
            return any(t.grad is not None for _, t in fwd.watch)
        return any(t.grad is not None for t in fwd.outs)

    # ---- gradients and the optimizer ----
    def _norm_hook(self, i: int):
        def hook(p: torch.Tensor) -> None:
            """Post-accumulate-grad hook, hook(param): fires when backward has added into p.grad."""
            if self._step % self.policy.every == 0 and not self._in_step:
                grad = p.grad
                self._after_backward[i] = (grad, grad._version)
                if self._eager_norms:
                    self._norms[i] = torch.linalg.vector_norm(grad)
        return hook

    def _weights(self) -> list[torch.Tensor]:
        return [v if v is not None else p.detach().reshape(-1) for v, (_, p) in zip(self._flat_params, self._params)]

    def _on_step_begin(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict):
        """Optimizer step pre-hook, hook(optimizer, args, kwargs) -> None or (args, kwargs)."""
        if self._watch is not None:
            self._watch.stop()
        self._in_step = True
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args[0] is the optimizer
        if closure is None:
            self._read_step(optimizer)
            return None
        if self._fwd is not None and not self._reached(self._fwd):
            self._skipped[UNTRAINED] += 1
        self._fwd = None
        self._in_step = False  # the closure's forward and backward are this step's
        evaluations = [0]

        def recorded_closure():
            loss = closure()
            evaluations[0] += 1
            if evaluations[0] == 1:
                self._in_step = True
                self._read_step(optimizer, loss)
            return loss
        if "closure" in kwargs:
            return args, {**kwargs, "closure": recorded_closure}
        return (args[0], recorded_closure, *args[2:]), kwargs

    def _read_step(self, optimizer: torch.optim.Optimizer, closure_loss: Any = None) -> None:
        """Read what the optimizer is about to use: its lr, the weights, their gradients."""
        fwd = self._fwd
        if fwd is not None and not self._reached(fwd):
            self._skipped[UNTRAINED] += 1
            fwd = self._fwd = None
        if self._watch is not None:
            self._watch.stop()
        if self._step % self.policy.every:
            return
        items = self._step_items = []
        if fwd is None:
            self._unseen("a step's training forward (model.forward called directly, or no forward in the step)")
        else:
            for name, output in fwd.watch:
                grad = output.grad
                if grad is not None:
                    items.append((name, grad, grad._version))
            if not fwd.has_loss and isinstance(closure_loss, torch.Tensor) and closure_loss.dim() == 0:
                self._keep(items, "loss", closure_loss)
        items.append(("lr", float(optimizer.param_groups[0]["lr"]), None))
        if not self._params:
            return
        grads = [p.grad for p in self._param_list]
        if any(g is None for g in grads):
            self._unseen("gradient of a parameter whose .grad was None at a step (recorded as NaN)")
            grads = [g if g is not None else torch.full_like(p, float("nan")) for g, p in zip(grads, self._param_list)]
        items += [("param_before", torch.cat(self._weights()), None),
                  ("param_grad", torch.cat([g.reshape(-1) for g in grads]), None)]  # .grad needs no detach
        self._read_norm_before_clipping(items, grads)

    def _read_norm_before_clipping(self, items: list, grads: list[torch.Tensor]) -> None:
        """The norm before clipping, when the gradients at the step are not the ones backward left."""
        if self.distributed:
            self._unseen("the gradient norm before clipping (under DDP backward hooks see the local gradient)")
            return
        seen, self._after_backward = self._after_backward, [None] * len(grads)
        norms, self._norms = self._norms, [None] * len(grads)
        edited = False
        for g, s in zip(grads, seen):
            if s is None:
                return  # a parameter got no gradient from backward: no claim about the norm
            if g is not s[0] or g._version != s[1]:
                edited = True
        if not edited:
            return  # .grad is what backward left: log.grad_norm is the norm of the recorded gradient
        if all(n is not None for n in norms):
            items.append(("grad_norm", torch.linalg.vector_norm(torch.stack(norms)), None))
        else:
            items.append(("grad_norm", torch.full((), -1.0, dtype=grads[0].dtype), None))  # -1: not seen
            self._unseen(f"the gradient norm before clipping at step {self._step} (the first step whose gradients "
                         "were changed in place after backward; log.grad_norm is NaN there, seen at every later step)")
        self._eager_norms = True

    def _on_step_end(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """Optimizer step post-hook, hook(optimizer, args, kwargs): the step is done; commit its row."""
        self._in_step = False
        if self._watch is not None:
            self._watch.stop()
        fwd, self._fwd = self._fwd, None
        kept = self._step % self.policy.every == 0
        if kept:
            items = (fwd.items if fwd is not None else []) + self._step_items
            if self._params:
                items.append(("param_after", torch.cat(self._weights()), None))
            self._commit(items)
        self._step_items = []
        self._step += 1
        every = self.policy.every
        if every > 1:  # capture hooks only around the steps the policy keeps
            if self._step % every == 0:
                self._attach_capture()
            elif kept:
                self._detach_capture()

    def _commit(self, items: list) -> None:
        epoch = self._step // self.steps_per_epoch if self.steps_per_epoch else 0
        items += [("step", self._step, None), ("epoch", epoch, None),
                  ("batch_size", self._batch, None)]
        if self._samples is not None:
            items.append(("samples", self._samples, None))
            self._samples = None
        self._log.stage_step(self._row, items)
        self._row += 1
