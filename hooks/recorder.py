"""Recorder: wrap the model's forwards, read the optimizer at its step, copy what passes into a SnapshotLog.

    with Recorder(model, optimizer, loss_fn, steps_per_epoch=len(loader)) as rec:
        for x, y in loader:                     # the ordinary PyTorch loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)         # or F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
    rec.log[0].grads["hidden.weight"]; rec.report()

The optimizer defines the step: row k holds what optimizer step k used. Its parameters as they were when
the step began and its gradients, read at the step from the optimizer's param_groups (so `.data`
replacement, `.to()`, a new parameter group are seen); each group's lr; and the forward whose gradients it
consumed: the first grad-enabled forward that backward reached since the gradients were last cleared.
Evaluation forwards (no_grad / inference_mode), forwards no backward reached, further forwards of the step
(gradient accumulation, closure re-evaluations) and skipped iterations are no row; rec.report() counts each.
A skipped iteration is one whose gradients were cleared (zero_grad) before any optimizer step used them:
GradScaler's inf/NaN skip (it does not call optimizer.step() at all), or a loop's own `if finite: step()`.

Where each number comes from:
  model's forward, wrapped     inputs, outputs; starts the step's forward (see hooks/wrapping.py)
  each layer's forward, wrapped   its output (a layer called twice: `act`, `act#1`); a tensor hook on
                               the output gives its gradient
  loss module's forward, wrapped  targets, loss (when loss_fn is an nn.Module)
  BackwardWatch                the loss = the tensor backward() started from (no loss module given)
  post-accumulate-grad hooks   which gradients backward left: the norm before clipping (while capturing)
  the gradients themselves     at a forward while a trained one is pending: cleared since (a skipped
                               iteration) or still there (gradient accumulation)
  optimizer step pre-hook      lr of each group, parameters before, the gradients the optimizer reads; the
                               GradScaler stepping it, if any (hooks/loss_scale.py), whose scale is divided
                               out of the loss and the activation gradients and kept as `loss_scale`
  optimizer step post-hook     parameters after; the row is committed
The batch size is the data's: a PackedSequence's batch_sizes[0], else the batch dimension of the first
recurrent layer that ran (dim 1 of its input unless batch_first), else dim 0 of the model's first input.
Every tensor field keeps its own shape per row, so nothing is cut along a guessed dimension.

Refusals (one line, before anything is recorded wrong): a torch.compile'd model; nested Recorders on one
model; an optimizer that does GradScaler's work inside its own step (fused); a parameter whose shape
changes; reading the log of a Recorder that was never entered.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import PackedSequence
from torch.utils.hooks import RemovableHandle

from nn_lesson.hooks.backward_watch import BackwardWatch
from nn_lesson.hooks.loss_scale import loss_scale_of_this_step
from nn_lesson.hooks.policy import CapturePolicy, ordinal
from nn_lesson.hooks.report import Report
from nn_lesson.hooks.snapshot_log import SnapshotLog
from nn_lesson.hooks.snapshot_stream import StreamedLog
from nn_lesson.hooks.statistics import WorkBuffers, row_stats
from nn_lesson.hooks.stepped_params import SteppedParams
from nn_lesson.hooks.wrapping import RECORDER_ATTR, ForwardWrap

# Parameter rows at least this long are copied straight into the log (see Recorder._log_row).
DIRECT_ROW_NUMBERS = 4096

NO_GRAD = "under torch.no_grad(): evaluation, not a step"
INFERENCE = "under torch.inference_mode(): evaluation, not a step"
EXTRA = "another forward in the same step (gradient accumulation, a closure re-evaluation, a second input): the step's first trained forward is kept"
UNTRAINED = "grad enabled but backward() never reached its output before the next forward or step"
SKIPPED = "skipped iteration: its gradients were cleared before any optimizer step used them (GradScaler's inf/NaN skip, or the loop did not call step())"
COMPILED = ("Recorder: cannot record a torch.compile'd model (hooks are compiled away or break the graph); "
            "record the plain module (e.g. Recorder(model._orig_mod, opt)) and call it uncompiled while recording")
NO_FORWARD = ("Recorder: a {kind} has no forward of its own, so the loop never calls it and no step's forward, "
              "loss or activations could be recorded; record the module the loop calls (Recorder(model['net'], opt)), "
              "or put the modules in one nn.Module whose forward calls them")
FUSED_SCALER = ("Recorder: this optimizer does GradScaler's unscaling and inf/NaN skip inside its own step "
                "(fused=True), where no hook sees the gradient it uses or whether it stepped; create it with "
                "fused=False while recording")


class _Forward:
    """One grad-enabled forward of the model that may become its step's row."""
    __slots__ = ("items", "watch", "outs", "grads", "calls", "trained", "loss", "targets", "batch", "rnn_batch",
                 "checks", "__weakref__")

    def __init__(self):
        self.items: list[tuple[str, Any, int | None]] = []
        self.watch: list[tuple[str, torch.Tensor]] = []   # layer outputs with retain_grad(), read at the step
        self.outs: list[torch.Tensor] = []                # model outputs with retain_grad(): did backward reach them?
        self.grads: list[tuple[str, torch.Tensor]] = []   # activation gradients from Python tensor hooks
        self.calls: dict[str, int] = {}
        self.trained = False                               # a backward reached its outputs (see _trained)
        self.loss: torch.Tensor | None = None              # as the loop computed it (scaled, under GradScaler)
        self.targets: torch.Tensor | None = None
        self.batch = 1
        self.rnn_batch = False                             # the batch size came from a recurrent layer
        self.checks: list[tuple[str, torch.Tensor, int]] = []  # outputs reduced when seen: (name, output, version)


STATS_FOLDER = "statistics"  # where a streamed Recorder's statistics of every step go, inside stream_to
FULL_ONLY = ("inputs", "targets", "outputs", "samples")  # kept at full steps; no statistics of them
THIN_AT = 2 / 3  # thinning rebuilds a column beside the old one: at 2/3 of the budget, the peak stays within it
# An explicit policy whose budget is full before this step is told so at its first kept step; one that fills later
# is told when the log holds a quarter of it (a short run is not warned about a step it will never reach).
STEPS_WORTH_WARNING = 10_000


def default_memory_budget() -> int:
    """A quarter of the memory available now (Linux's MemAvailable; else of the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 4
    except OSError:
        pass
    import os
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


STATS_NOW = 1 << 16  # numbers: a tensor this large is reduced when seen; smaller ones in batches at the flush
MAX_EARLIER = 3  # forwards awaiting a backward held at once; an older one is counted as never reached
INPUT_NAMES = ("input_ids", "x", "input", "inputs", "pixel_values", "input_values", "inputs_embeds", "src")
TARGET_NAMES = ("labels", "label", "targets", "target", "y")


def _input_names(model: nn.Module) -> tuple[str, ...]:
    """Where a keyword-only call's inputs are: the forward's first parameter, then the usual names."""
    import inspect
    try:
        params = [p.name for p in inspect.signature(model.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        params = []
    first = params[:1] if params and params[0] not in TARGET_NAMES else []
    return tuple(first) + tuple(n for n in INPUT_NAMES if n not in first)


def free_stream_folder(folder: Path) -> Path:
    """`folder`, or folder-2, -3, ... when it already holds a streamed log (numbered like write_tensorboard's run
    folders: a script run twice keeps both streams; rec.stream_to says which was used)."""
    n, candidate = 1, folder
    while StreamedLog.holds_stream(candidate):
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    if candidate != folder:
        logging.getLogger("nn_lesson").info(f"Recorder: {folder} already holds a streamed log; streaming to {candidate}")
    return candidate


def _world_rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def recorded_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers a user sees: modules without children, and parametrized modules (weight_norm, any
    torch.nn.utils.parametrize), never the parametrization's own modules inside them."""
    return [(name, m) for name, m in model.named_modules()
            if name and "parametrizations" not in name.split(".")
            and (not any(m.children()) or parametrize.is_parametrized(m))]


def tensors_in(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """(suffix, tensor) of each tensor in an output: ':0', ':1:0' ... in a tuple/list, ':key' in a dict; a
    PackedSequence is its .data."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, PackedSequence):
        return [(prefix, value.data)]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in tensors_in(v, f"{prefix}:{k}")]
    if isinstance(value, (tuple, list)):
        return [t for i, v in enumerate(value) for t in tensors_in(v, f"{prefix}:{i}")]
    return []


def batch_of_input(x: Any) -> int | None:
    if isinstance(x, PackedSequence):
        return int(x.batch_sizes[0])
    if isinstance(x, torch.Tensor):
        return x.shape[0] if x.dim() > 0 else 1
    return None


class Recorder:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable[..., torch.Tensor] | None = None, *, steps_per_epoch: int | None = None,
                 policy: CapturePolicy | None = None, memory_budget: int | None = None,
                 stream_to: str | os.PathLike | None = None):
        """policy: what to keep (default: every number of every step while it fits the memory budget, then
        statistics of every step and every number of every k-th step, k doubling as needed). memory_budget:
        bytes the log may hold (default: a quarter of the memory available when the Recorder is made).
        stream_to: a new folder the log is written to as it flushes (rec.log reads it back lazily; statistics
        in its statistics/ subfolder): memory holds one flush whatever the run length, a killed run keeps every
        flushed step, and the budget bounds the folder's size instead."""
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's wrapper module
            raise RuntimeError(COMPILED)
        if type(model).forward is nn.Module.forward:  # ModuleDict, ModuleList: a loop never calls the model itself
            raise RuntimeError(NO_FORWARD.format(kind=type(model).__name__))
        if not isinstance(model, nn.Module):
            raise TypeError(f"Recorder: model must be a torch.nn.Module, not {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Recorder: optimizer must be a torch.optim.Optimizer (or None), not "
                            f"{type(optimizer).__name__}")
        if optimizer is not None and any(True for _ in model.parameters()):
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            if not any(id(p) in held for p in model.parameters()):
                raise ValueError(f"Recorder: this {type(optimizer).__name__} holds none of the model's parameters "
                                 "(an optimizer made for another model?); pass the one that steps this model")
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.steps_per_epoch = steps_per_epoch
        self.policy = policy or CapturePolicy.full()
        self.adaptive = policy is None            # the default: switches to fit memory_budget
        self.memory_budget = default_memory_budget() if memory_budget is None else int(memory_budget)
        self._every = self.policy.every           # full rows every k-th step; the default doubles it to fit
        self._held = 0                            # bytes of the full rows kept so far (the log's tensors)
        self._next_check, self._told = 1, False   # an explicit policy: when to look at the budget, told yet
        self._notes: list[str] = []               # what the Recorder decided on its own, said once each
        self.rank = _world_rank()
        self.distributed = isinstance(model, nn.parallel.DistributedDataParallel)
        self._params = SteppedParams(model, loss_fn, optimizer)
        self._layers_of = recorded_layers(model)
        self.stream_to = free_stream_folder(Path(stream_to)) if stream_to is not None else None
        self._layer_types = {name: type(m).__name__ for name, m in self._layers_of}
        self._log = self._new_log(list(self._params.slots), [name for name, _ in self._layers_of],
                                  self.policy.bins if self.policy.stats_only else 0, "")
        self._layers = set(self._log.layers)
        # Statistics of every step beside full rows every k-th step (CapturePolicy.stats_and_every, or the
        # default policy once every number of every step no longer fits its budget).
        self._stats: SnapshotLog | None = None
        self._stats_row = 0
        self._reduce_now = False                  # this step keeps statistics only: large tensors reduced when seen
        self._work = WorkBuffers()                # their temporaries, reused
        if self.policy.stats_every_step:
            self._start_stats()
        self._handles: list[RemovableHandle] = []
        self._grad_hooks: list[RemovableHandle] = []
        self._wraps: list[ForwardWrap] = []
        self._capture: list[ForwardWrap] = []      # the layers' and loss module's wraps; see _attach_capture
        self._started = False
        self._step = 0                        # optimizer steps taken since recording began
        self._row = 0                         # the row the pending step will be committed to
        self._fwd: _Forward | None = None     # the forward whose gradients the next step will use
        # Earlier grad-enabled forwards since the gradients were cleared that no backward had reached when the
        # next began (a discriminator on real data, then on fake): the step keeps the first one backward reached.
        self._earlier: list[_Forward] = []
        self._input_names = _input_names(model)
        self._current: _Forward | None = None  # the forward now running, if it is being captured
        self._step_items: list[tuple[str, Any, int | None]] = []
        self._in_step = False
        self._depth = 0                       # optimizer steps running: a subclass's step calling super().step()
        self._in_closure = False
        # A model with in-place modules (ReLU(inplace=True)) changes outputs after the wrapper has seen them,
        # so its values are cloned when seen.
        self._copy_now = any(getattr(m, "inplace", False) for _, m in self._layers_of)
        # What backward left in each slot's .grad: (grad, its version), from post-accumulate-grad hooks. At
        # the step, one changed in place means clipping or unscaling, and from then on the hooks also compute
        # each norm (~7 µs a parameter, so only then).
        self._seen: list[tuple[torch.Tensor, int] | None] = []
        self._norms: list[torch.Tensor | None] = []
        self._eager_norms = False
        self._watch = BackwardWatch(self._on_backward) if not isinstance(loss_fn, nn.Module) else None
        self._samples: torch.Tensor | None = None
        self._calls: dict[str, int] = {}
        self._last_calls: dict[str, int] = {}
        self._skipped: Counter[str] = Counter()
        self._not_seen: dict[str, None] = {}
        self._changed: Counter[str] = Counter()  # fields changed in place between capture and the step's end

    # ---- attach / detach ----
    @property
    def log(self) -> SnapshotLog:
        if not self._started:
            raise RuntimeError("Recorder: nothing was recorded because the Recorder was never entered; use "
                               "`with Recorder(model, opt) as rec:` around the loop (or rec.start() ... rec.close())")
        return self._log

    @property
    def stats_log(self) -> SnapshotLog | None:
        """Statistics of every step (rows: steps, with a `step` column) when the policy keeps them beside full
        rows, else None."""
        if self._stats is not None:
            self._stats.flush()
        return self._stats

    def _new_log(self, params: list, layers: list[str], bins: int, subfolder: str) -> SnapshotLog:
        if self.stream_to is None:
            return SnapshotLog(params, layers, bins, layer_types=self._layer_types)
        return StreamedLog(self.stream_to / subfolder, params, layers, bins, layer_types=self._layer_types)

    def _start_stats(self) -> None:
        self._stats = self._new_log(list(self._log.params), list(self._log.layers), self.policy.bins, STATS_FOLDER)

    def start(self) -> "Recorder":
        """Attach the hooks (what `with` does); pair with close()."""
        return self.__enter__()

    def __enter__(self) -> "Recorder":
        if getattr(self.model, RECORDER_ATTR, None) is not None:
            raise RuntimeError("Recorder: this model already has an active Recorder; nested Recorders on one "
                               "model are not supported (exit the first `with` block before starting another)")
        self.model.__dict__[RECORDER_ATTR] = self
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
        """Remove every hook and wrapper this recorder attached (safe to call twice)."""
        if self._watch is not None:
            self._watch.stop()
        if self._started:  # the loop ended after forwards no step used: a backward whose step never ran, or an
            for fwd in self._pending():  # evaluation with grad enabled after the last step
                self._skipped[SKIPPED if self._trained(fwd) else UNTRAINED] += 1
        self._detach_capture()
        for wrap in reversed(self._wraps):
            wrap.restore()
        self._wraps.clear()
        for handle in self._handles + self._grad_hooks:
            handle.remove()
        self._handles.clear()
        self._grad_hooks.clear()
        self._fwd = self._current = None  # drop references to the last forward's tensors
        self._earlier = []
        self._step_items = []
        self.model.__dict__.pop(RECORDER_ATTR, None)
        self._log.flush()
        if self._stats is not None:
            self._stats.flush()

    def _attach(self) -> None:
        self._wraps.append(ForwardWrap(self.model, self._on_model_output, self._on_model_input))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(self._on_step_begin))
            self._handles.append(self.optimizer.register_step_post_hook(self._on_step_end))
        self._attach_capture()

    def _hook_grads(self) -> None:
        """Post-accumulate-grad hooks on every slot while capturing (again when slots were added). Under
        DDP none: they would see the local gradient, not the all-reduced one the optimizer uses."""
        self._unhook_grads()
        n = len(self._params.tensors)
        self._seen, self._norms = [None] * n, [None] * n  # before the hooks, which hold these lists
        if self.optimizer is not None and not self.distributed:
            self._grad_hooks = [p.register_post_accumulate_grad_hook(self._grad_hook(i))
                                for i, p in enumerate(self._params.tensors) if p.requires_grad]

    def _unhook_grads(self) -> None:
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []

    def _attach_capture(self) -> None:
        """The wrappers that copy a step's numbers. Under every_k(k) they are on only from the end of the
        step before a kept one to the end of the kept step: other steps run the layers unwrapped."""
        if self._capture:
            return
        for name, module in self._layers_of:
            self._capture.append(ForwardWrap(module, self._layer_seen(name, module)))
        if isinstance(self.loss_fn, nn.Module):
            self._capture.append(ForwardWrap(self.loss_fn, self._on_loss))
        self._hook_grads()

    def _detach_capture(self) -> None:
        for wrap in reversed(self._capture):
            wrap.restore()
        self._capture.clear()
        self._unhook_grads()

    def mark_samples(self, indices: torch.Tensor | list[int]) -> None:
        """Optional: say which samples (dataset row numbers) the next step uses, e.g. 0 for Sarah."""
        if self.policy.stats_only:
            return
        plain = type(indices) is torch.Tensor and indices.dtype == torch.int64 and indices.dim() == 1
        ids = indices if plain else torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        self._samples = ids.clone()  # a loop may refill its index tensor in place before the row is stored

    def pending(self, name: str) -> torch.Tensor | None:
        """A value the current, uncommitted step has captured so far (e.g. "act:hidden"), or None."""
        fwd = self._fwd
        items = (fwd.items if fwd is not None else []) + self._step_items
        return next((v for n, v, _ in items if n == name), None)

    def report(self) -> Report:
        """Which modules ran and how often, which forwards were skipped and why, what could not be seen."""
        not_seen = list(self._not_seen)
        if self.optimizer is not None and self._started:
            missing = self._params.not_recorded(self.optimizer)
            if missing:
                not_seen.append("parameters the optimizer holds that the log lacks: " + ", ".join(missing))
            unwritten = getattr(self._log, "unwritten", None)
            if unwritten is not None:  # a streamed log whose folder cannot be written: said, never raised here
                not_seen.append(f"{unwritten}; they are still in memory")
            elif self._log.steps and not self._log.has("loss"):
                not_seen.append("the loss (no nn.Module loss_fn and no Tensor.backward() call seen)")
        changed = self._changed + Counter(self._log.changed)
        if changed:
            not_seen.append("values changed in place after the Recorder saw them, left absent in those rows ("
                            + ", ".join(f"{name} at {n} step{'s' * (n > 1)}" for name, n in changed.items())
                            + "); from the first such step on, layer outputs are copied when produced")
        never_ran = tuple(n for n, _ in self._layers_of if n not in self._calls)
        return Report(self._step, self._log.steps, self._every,
                      dict(self._calls), never_ran,
                      {why: n for why, n in self._skipped.items() if n}, tuple(not_seen), tuple(self._notes),
                      self._stats.steps if self._stats is not None else 0, self._used_by_parent(never_ran))

    def _used_by_parent(self, never_ran: tuple[str, ...]) -> tuple[str, ...]:
        """Modules never called whose own parameters got a gradient at the last recorded step: their parent's
        forward used the weights directly (MultiheadAttention's out_proj)."""
        if not never_ran or not self._started or getattr(self._log, "unwritten", None) is not None:
            return ()
        log = self._stats if self._stats is not None else self._log
        if not log.steps:
            return ()
        columns = log.columns
        last = log.steps - 1
        grads = columns["param_grad"].at(last) if "param_grad" in columns else None
        used = []
        for name in never_ran:
            for slot in self._log.params:
                module, _, _ = slot.name.rpartition(".")
                if module != name:
                    continue
                if grads is not None:
                    value = grads[slot.offset: slot.offset + slot.numel]
                    reached = bool(torch.isfinite(value).all()) and bool(value.any())
                else:
                    stats = columns.get(f"stats:{slot.name}:grad")
                    reached = stats is not None and stats.present(last) and bool(stats.at(last)[2] > 0)  # its norm
                if reached:
                    used.append(name)
                    break
        return tuple(used)

    def _unseen(self, what: str) -> None:
        self._not_seen.setdefault(what)

    # ---- the forward ----
    def _keep(self, items: list, name: str, value: torch.Tensor) -> None:
        if self._reduce_now and value.numel() >= STATS_NOW and value.dim() > 0:
            self._keep_stats(items, name, value)
            return
        if self._copy_now:
            v = value.detach().clone()
        else:
            v = value.detach() if value.requires_grad else value
        items.append((name, v, v._version))

    def _keep_act(self, fwd: _Forward, name: str, output: torch.Tensor) -> None:
        """A layer's output. One reduced to statistics now is watched for an in-place edit after the layer, which
        would make its retained gradient the edited tensor's (checked at the commit, see _without_changed)."""
        self._keep(fwd.items, name, output)
        if self._reduce_now and not self._copy_now and output.numel() >= STATS_NOW:
            fwd.checks.append((name, output, output._version))

    def _keep_stats(self, items: list, name: str, value: torch.Tensor) -> None:
        """A large tensor of a statistics-only step: its statistics row now, as the layer produced it, instead of
        a reference (or a copy) staged until the flush and stacked there: no copy, no stack, two passes."""
        values = value.detach().reshape(1, -1)
        items.append((f"stats:{name}", row_stats(values, self.policy.bins, self._work)[0], None))

    def _keep_copy(self, items: list, name: str, value: torch.Tensor) -> None:
        """The loop's own tensors (inputs, targets) are copied when seen: a loop may refill one buffer in
        place every step (a static input buffer, a prefetcher), which would change a staged reference
        before it reaches the log."""
        items.append((name, value.detach().clone(), None))

    def _capturing(self) -> bool:
        """Is this step read at all (statistics or full)?"""
        return self._stats is not None or self._step % self._every == 0

    def _stats_step(self) -> bool:
        """Does this step keep statistics only (the statistics policy, or a step between full rows)?"""
        return self.policy.stats_only or (self._stats is not None and self._step % self._every != 0)

    def _full_step(self) -> bool:
        """Does this step keep every number (inputs, outputs, targets too)?"""
        return not self.policy.stats_only and self._step % self._every == 0

    def _on_model_input(self, args: tuple, kwargs: dict) -> _Forward | None:
        """Before each forward of the model: is this the step's forward? Returns it if it is captured."""
        if torch.compiler.is_compiling():
            raise RuntimeError(COMPILED)
        self._current = None
        if self._depth and not self._in_closure:  # the last optimizer.step() raised: it is no step
            self._depth, self._in_step, self._step_items = 0, False, []
        if self.optimizer is not None and (torch.is_inference_mode_enabled() or not torch.is_grad_enabled()):
            self._skipped[INFERENCE if torch.is_inference_mode_enabled() else NO_GRAD] += 1
            return None  # an evaluation never clears the pending training forward, nor stops its loss watch
        if self._watch is not None:
            self._watch.stop()  # the watch covers loss + backward of the last training forward only
        if self.optimizer is not None:
            fwd = self._fwd
            if fwd is not None and self._trained(fwd):
                if self._in_step or not self._grads_cleared():  # in a step: a closure's re-evaluation
                    self._skipped[EXTRA] += 1
                    return None
                for dropped in self._pending():
                    self._skipped[SKIPPED if self._trained(dropped) else UNTRAINED] += 1
            elif fwd is not None:  # not reached by a backward yet: it may be, by one backward after both
                self._earlier.append(fwd)
                if len(self._earlier) > MAX_EARLIER:
                    self._earlier.pop(0)
                    self._skipped[UNTRAINED] += 1
            self._seen[:] = [None] * len(self._seen)
        elif not self._capturing():
            self._step += 1  # without an optimizer every forward is a step
            return None
        fwd = self._fwd = _Forward()
        self._reduce_now = self._stats_step()
        if not self._capturing():
            return None  # a step the policy does not keep: only whether backward reaches it is watched
        self._current = fwd
        x = args[0] if args else self._keyword_input(kwargs)
        batch = batch_of_input(x)
        if batch is None:
            self._unseen("inputs (the model's first argument is not a tensor)" if args else
                         "inputs (the model was called with no tensor argument)")
        else:
            fwd.batch = batch
            fwd.rnn_batch = isinstance(x, PackedSequence)
            if self._full_step():
                self._keep_copy(fwd.items, "inputs", x.data if isinstance(x, PackedSequence) else x)
        return fwd

    def _keyword_input(self, kwargs: dict) -> Any:
        """The inputs of a model called with keywords only (model(**batch), as Hugging Face models are): the
        forward's first parameter by name, else a usual input name, else the first tensor that is no target
        (a collator may put `labels` first)."""
        for name in self._input_names:
            if isinstance(kwargs.get(name), (torch.Tensor, PackedSequence)):
                return kwargs[name]
        tensors = [(k, v) for k, v in kwargs.items() if isinstance(v, (torch.Tensor, PackedSequence))]
        return next((v for k, v in tensors if k not in TARGET_NAMES), tensors[0][1] if tensors else None)

    def _pending(self) -> list[_Forward]:
        """The forwards waiting for a step, oldest first; forgets them."""
        pending = self._earlier + ([self._fwd] if self._fwd is not None else [])
        self._earlier, self._fwd = [], None
        return pending

    def _step_forward(self) -> _Forward | None:
        """The forward this step consumes: the first pending one a backward reached. Later trained ones are
        extra forwards of the step, ones no backward reached are counted as such. A functional loss seen at
        the backward belongs to the step: it moves to the kept forward."""
        latest = self._fwd
        kept = None
        for fwd in self._pending():
            if not self._trained(fwd):
                self._skipped[UNTRAINED] += 1
            elif kept is None:
                kept = fwd
            else:
                self._skipped[EXTRA] += 1
        if kept is not None and latest is not None and kept is not latest and kept.loss is None:
            kept.loss = latest.loss
        self._fwd = kept
        return kept

    def _grads_cleared(self) -> bool:
        """A trained forward is pending and another begins: were its gradients cleared since (zero_grad,
        set to None or to zeros), or are they still there to accumulate into? Read from the gradients
        themselves, so it holds under every policy and DDP; it runs only on such iterations (a skipped one,
        or accumulation). A backward whose gradients are all exactly zero reads as cleared: its forward
        then yields the row to the next one, which the same step also consumes."""
        grads = [p.grad for p in self._params.tensors]
        return all(g is None or not bool(g.any()) for g in grads)

    def _layer_seen(self, name: str, module: nn.Module):
        rnn = isinstance(module, nn.RNNBase)
        batch_dim = 0 if getattr(module, "batch_first", False) else 1
        act_name, grad_name = f"act:{name}", f"act_grad:{name}"

        def seen(args: tuple, kwargs: dict, output: Any) -> None:
            fwd = self._current
            if fwd is None:
                return
            if rnn and not fwd.rnn_batch and args:  # the batch dimension the recurrent layer declares
                x = args[0]
                fwd.rnn_batch = True
                if isinstance(x, PackedSequence):
                    fwd.batch = int(x.batch_sizes[0])
                elif isinstance(x, torch.Tensor):
                    fwd.batch = x.shape[batch_dim] if x.dim() == 3 else 1
            calls = fwd.calls
            if name not in calls and isinstance(output, torch.Tensor):  # the usual case: names made once
                calls[name] = 1
                self._keep_act(fwd, act_name, output)
                if output.requires_grad:
                    self._watch_grad(fwd, grad_name, output)
                return
            if name in calls:  # a module called again in this forward: its own name, act#1, act#2, ...
                key = f"{name}#{calls[name]}"
                calls[name] += 1
            else:
                key = name
                calls[name] = 1
            named = tensors_in(output)
            if not named:
                self._unseen(f"activation of {key} (returns {type(output).__name__}, no tensor)")
            for suffix, value in named:
                full = key + suffix
                if full not in self._layers:
                    self._layers.add(full)
                    self._log.layers.append(full)
                    if self._stats is not None:
                        self._stats.layers.append(full)
                self._keep_act(fwd, f"act:{full}", value)
                if value.requires_grad:
                    self._watch_grad(fwd, f"act_grad:{full}", value)
        return seen

    def _watch_grad(self, fwd: _Forward, key: str, output: torch.Tensor) -> None:
        """The gradient of a layer's output, by a tensor hook. retain_grad() is one (in C++: 0.2 µs to add, no
        Python call in backward, against ~5 µs plus a call for a Python hook), read at the step. A layer
        whose output a later in-place module overwrites needs the value at the time: a Python hook then."""
        if not self._copy_now:
            output.retain_grad()
            fwd.watch.append((key, output))
            return

        # A weak reference: the hook lives on the autograd graph, which the forward's outputs (fwd.outs) keep
        # alive; a strong one would close a cycle through C++ that Python's collector cannot see, and every
        # forward of a model with in-place layers would be kept for good (+140 MiB a step on a small ResNet).
        ref = weakref.ref(fwd)

        def hook(grad: torch.Tensor) -> None:
            """Tensor hook on an output, hook(grad): its gradient, when backward computes it."""
            fwd = ref()
            if fwd is None:
                return
            fwd.trained = True
            if (fwd is self._fwd or fwd in self._earlier) and not self._in_step and not any(n == key for n, _ in fwd.grads):
                fwd.grads.append((key, grad))
        output.register_hook(hook)

    @staticmethod
    def _trained(fwd: _Forward) -> bool:
        """Did a backward reach this forward? retain_grad() left .grad on what it reached."""
        if not fwd.trained:
            fwd.trained = (any(t.grad is not None for t in fwd.outs) if fwd.outs else
                           any(t.grad is not None for _, t in fwd.watch))
        return fwd.trained

    def _on_model_output(self, fwd: _Forward | None, kwargs: dict, output: Any) -> None:
        """After each forward of the model (fwd: what _on_model_input returned)."""
        self._current = None
        pending = self._fwd
        if pending is None or (fwd is not None and fwd is not pending):
            return
        for suffix, value in tensors_in(output):
            if fwd is not None and self._full_step():
                self._keep(fwd.items, "outputs" + suffix, value)
            if value.requires_grad:
                if not value.retains_grad:
                    value.retain_grad()
                pending.outs.append(value)
        if fwd is not None and fwd.calls != self._last_calls:  # usually the same modules, the same number of times
            self._last_calls = fwd.calls
            for name, calls in fwd.calls.items():
                self._calls[name] = max(self._calls.get(name, 0), calls)
        if self.optimizer is None:
            if fwd is not None:
                self._commit(fwd)
            self._fwd = None
            self._step += 1
        elif self._watch is not None and not self._in_step and fwd is not None:
            self._watch.start()

    def _on_loss(self, args: tuple, kwargs: dict, loss: Any) -> None:
        """After each forward of an nn.Module loss."""
        fwd = self._fwd
        if fwd is None or fwd.loss is not None or not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            return
        if not loss.requires_grad or self._current is not None or self._trained(fwd):
            return  # an evaluation loss, one inside the model, or one after backward
        if len(args) > 1 and isinstance(args[1], torch.Tensor):
            fwd.targets = args[1]
        fwd.loss = loss.detach()

    def _on_backward(self, root: torch.Tensor) -> None:
        """BackwardWatch callback: `root.backward()` has just returned."""
        fwd = self._fwd
        if fwd is None or fwd.loss is not None or not self._trained(fwd):
            return
        if root.dim() == 0:
            fwd.loss = root.detach()
        else:
            self._unseen("the loss (backward() started from a tensor that is not a single number)")

    # ---- gradients and the optimizer ----
    def _grad_hook(self, i: int):
        seen = self._seen

        def hook(p: torch.Tensor) -> None:
            """Post-accumulate-grad hook, hook(param): fires when backward has added into p.grad."""
            if not self._in_step:
                grad = p.grad
                seen[i] = (grad, grad._version)
                if self._eager_norms and self._capturing():
                    self._norms[i] = torch.linalg.vector_norm(grad.to_dense() if grad.is_sparse else grad)
        return hook

    def _on_step_begin(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict):
        """Optimizer step pre-hook, hook(optimizer, args, kwargs) -> None or (args, kwargs)."""
        if getattr(optimizer, "found_inf", None) is not None or "grad_scaler" in kwargs:
            raise RuntimeError(FUSED_SCALER)
        self._depth += 1
        if self._depth > 1:  # a step inside a step (an optimizer subclass calling super().step()): one step
            return None
        if self._watch is not None:
            self._watch.stop()
        self._in_step = True
        if self._params.refresh():
            self._log.add_params(self._params.slots[len(self._log.params):])
            if self._stats is not None:
                self._stats.add_params(self._params.slots[len(self._stats.params):])
            if self._capture:
                self._hook_grads()
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args[0] is the optimizer
        if closure is None:
            self._read_step(optimizer)
            return None
        pending = self._earlier + ([self._fwd] if self._fwd is not None else [])
        if not any(self._trained(fwd) for fwd in pending):  # the closure's forward and backward are the step's
            if pending:  # (a Counter keeps a key added with 0: the report would say "0 forwards skipped")
                self._skipped[UNTRAINED] += len(pending)
            self._earlier, self._fwd = [], None
        # else a backward ran before the step (Lightning's manual optimization passes a closure that does
        # nothing): that forward stays the step's unless the closure clears the gradients and starts anew
        self._in_step = False
        evaluations = [0]

        def recorded_closure():
            self._in_closure = True
            try:
                loss = closure()
            finally:
                self._in_closure = False
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
        fwd = self._step_forward()
        self._reduce_now = self._stats_step()
        if self._watch is not None:
            self._watch.stop()
        seen = list(self._seen)
        self._seen[:] = [None] * len(seen)  # later backwards of this step are not its own
        if not self._capturing():
            return
        scale = loss_scale_of_this_step() if closure_loss is None else None  # GradScaler takes no closure
        items = self._step_items = []
        if fwd is None:
            self._unseen("a step's training forward (no forward of the model in the step)")
        else:
            loss = fwd.loss
            if loss is None and isinstance(closure_loss, torch.Tensor) and closure_loss.dim() == 0:
                loss = closure_loss.detach()
            if fwd.targets is not None and self._full_step():
                self._keep_copy(items, "targets", fwd.targets)
            if loss is not None:
                if scale is not None and self._watch is not None:
                    loss = loss / scale  # a functional loss is the backward root: the scaled loss
                self._keep(items, "loss", loss)  # 0-d: kept as a value under every policy
            for name, output in fwd.watch:
                grad = output.grad
                if grad is None:
                    continue
                if self._reduce_now and grad.numel() >= STATS_NOW:
                    self._keep_stats(items, name, grad / scale if scale is not None else grad)
                else:
                    items.append((name, grad / scale, None) if scale is not None else (name, grad, grad._version))
            for name, grad in fwd.grads:
                self._keep(items, name, grad / scale if scale is not None else grad)
        groups = optimizer.param_groups
        items.append(("lr", float(groups[0]["lr"]), None))
        if len(groups) > 1:
            items.append(("group_lr", torch.tensor([float(g["lr"]) for g in groups], dtype=torch.float64), None))
        if scale is not None:
            items.append(("loss_scale", scale, None))
        if not self._params.slots:
            return
        out = self._log_row("param_grad")
        grads, missing = self._params.grads(out)
        if missing:
            self._unseen("gradient of a parameter whose .grad was None at a step (recorded as NaN; the optimizer "
                         "did not step it): " + ", ".join(missing))
        if grads is not out:
            items.append(("param_grad", grads, None))
        self._read_values(items, "param_before")
        self._read_norm_before_clipping(items, seen, scale)

    def _read_norm_before_clipping(self, items: list, seen: list, scale: float | None) -> None:
        """The norm before clipping, when the gradients at the step are not the ones backward left."""
        if self.distributed:
            self._unseen("the gradient norm before clipping (under DDP backward hooks see the local gradient)")
            return
        norms = list(self._norms)
        self._norms[:] = [None] * len(norms)
        edited = False
        for p, s, here in zip(self._params.tensors, seen, self._params.present):
            if not here:
                continue
            if s is None:
                return  # a parameter got no gradient from backward: no claim about the norm
            if p.grad is not s[0] or p.grad._version != s[1]:
                edited = True
        if not edited:
            return  # .grad is what backward left: log.grad_norm is the norm of the recorded gradient
        present = [n for n, here in zip(norms, self._params.present) if here]
        if present and all(n is not None for n in present):
            norm = torch.linalg.vector_norm(torch.stack(present))
            items.append(("grad_norm", norm / scale if scale is not None else norm, None))
        else:
            dtype = next(p.dtype for p in self._params.tensors)
            items.append(("grad_norm", torch.full((), -1.0, dtype=dtype), None))  # -1: not seen
            self._unseen(f"the gradient norm before clipping at step {self._step} (the first step whose gradients "
                         "were changed in place after backward; log.grad_norm is NaN there, seen at every later step)")
        self._eager_norms = True

    def _on_step_end(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """Optimizer step post-hook, hook(optimizer, args, kwargs): the step is done; commit its row."""
        self._depth = max(0, self._depth - 1)
        if self._depth:
            return  # the inner step of a subclass's step: the outer one ends the step
        self._in_step = False
        if self._watch is not None:
            self._watch.stop()
        fwd, self._fwd = self._fwd, None
        self._earlier = []
        self._seen[:] = [None] * len(self._seen)
        kept = self._capturing()
        if kept:
            if self._params.slots:
                self._read_values(self._step_items, "param_after")
            self._commit(fwd)
        self._step_items = []
        self._step += 1
        every = self._every
        if every > 1 and self._stats is None:  # capture wrappers only around the steps the policy keeps
            if self._step % every == 0:
                self._attach_capture()
            elif kept:
                self._detach_capture()

    def _log_row(self, name: str) -> torch.Tensor | None:
        """Where this step's flat parameter row can be copied straight into the log, if anywhere. Only for
        rows large enough that saving a copy outweighs finding the row (~3 µs of Python)."""
        if self._params.width < DIRECT_ROW_NUMBERS or self._stats is not None or not self._params.tensors[0].is_cpu:
            return None  # (the log lives in host memory: a GPU's parameters are staged and copied at the flush)
        return self._log.row_for(name, self._row, self._params.width, self._params.tensors[0].dtype)

    def _read_values(self, items: list, name: str) -> None:
        """The parameters now: copied into the log's row when they fit it, else staged."""
        out = self._log_row(name)
        flat = self._params.values(out)
        if flat is not out:
            items.append((name, flat, None))

    def _commit(self, fwd: _Forward | None) -> None:
        items = (fwd.items if fwd is not None else []) + self._step_items
        if [v._version for _, v, version in items if version is not None] != [
                version for _, _, version in items if version is not None]:
            items = self._without_changed(items)
        if fwd is not None and fwd.checks and any(t._version != v for _, t, v in fwd.checks):
            items = self._without_edited_grads(items, [n for n, t, v in fwd.checks if t._version != v])
        epoch = self._step // self.steps_per_epoch if self.steps_per_epoch else 0
        items += [("step", self._step, None), ("epoch", epoch, None),
                  ("batch_size", fwd.batch if fwd is not None else 0, None)]
        if self._samples is not None:
            items.append(("samples", self._samples, None))
            self._samples = None
        if self._stats is not None:
            self._stats.stage_step(self._stats_row, [item for item in items if item[0] not in FULL_ONLY])
            self._stats_row += 1
        if self._full_step() or self.policy.stats_only:
            self._log.stage_step(self._row, items)
            self._row += 1
            if not self.policy.stats_only:
                self._mind_budget(items)

    def _mind_budget(self, items: list) -> None:
        """After each full row: the bytes the log holds against the budget. The default policy keeps the log
        within it (statistics of every step from then on, full rows twice as far apart each time it fills);
        an explicit policy is told once, at its first row, at which step the budget runs out."""
        if not self.adaptive:
            if self._row != self._next_check:
                return  # an explicit policy is looked at after kept rows 1, 2, 4, 8, ...: a few times in a run
            self._next_check *= 2
        row = sum(v.numel() * v.element_size() for _, v, _ in items if isinstance(v, torch.Tensor))
        if self._params.width >= DIRECT_ROW_NUMBERS and self._stats is None:  # written straight into the log
            row += 3 * self._params.width * self._params.tensors[0].element_size()
        self._held = self._log.held_bytes  # what its columns have allocated, and what is staged for them
        if not self.adaptive and not self._told:
            full_at = self.memory_budget // max(1, row) * self._every
            # (looked at when the kept rows double: a quarter full now is at most half full at the next look)
            if self._row == 1 and full_at < STEPS_WORTH_WARNING or self._held > self.memory_budget / 4:
                self._told = True
                so_far = "" if self._row == 1 else f"by step {self._step} it holds {_size(self._held)}, and "
                self._say(f"Recorder: each kept step holds {_size(row)}; at {self.policy.describe()} {so_far}the "
                          f"memory budget of {_size(self.memory_budget)} is full at step {full_at} — pass "
                          f"policy=CapturePolicy.stats_and_every({max(2, self._every * 2)}) or a larger k, or "
                          "CapturePolicy.stats(), or raise memory_budget= (bytes)")
        if self.adaptive and self._held > self.memory_budget * THIN_AT:
            self._thin(row)

    def _thin(self, row: int) -> None:
        """Keep every number of every (2k)-th step only, and statistics of every step from now on."""
        if getattr(self._log, "unwritten", None) is not None:
            return  # a streamed log that cannot write now cannot be rewritten either: tried again next row
        first = self._stats is None
        self._every *= 2
        if first:  # the steps kept so far in full give their statistics before most of them are let go
            self._start_stats()
            self._backfill_stats()
        steps = self._log.step.tolist()
        keep = [i for i, s in enumerate(steps) if s % self._every == 0]
        self._log.keep_rows(keep)
        self._row = self._log.steps
        self._held = self._log.held_bytes
        if first:
            self._say(f"Recorder: every number of every step does not fit the memory budget of "
                      f"{_size(self.memory_budget)} ({_size(row)} a step); from step {self._step} on it keeps "
                      f"statistics of every step (rec.stats_log, from step 0) and every number of every "
                      f"{ordinal(self._every)} step (rec.log), k doubling whenever the budget fills")

    def _backfill_stats(self) -> None:
        """Statistics rows for the steps the full log holds (every step so far), from the log's own values."""
        log, stats = self._log, self._stats
        columns = {name: c for name, c in log.columns.items() if name not in FULL_ONLY and not name.startswith("shape:")}
        for r in range(log.steps):
            stats.stage_step(r, [(name, c.at(r), None) for name, c in columns.items() if c.present(r)])
        stats.flush()  # no view into the full log's columns outlives this
        self._stats_row = log.steps

    def _say(self, line: str) -> None:
        self._notes.append(line)
        if self.rank == 0:
            logging.getLogger("nn_lesson").warning(line)

    def _without_edited_grads(self, items: list, edited: list[str]) -> list:
        """Outputs reduced when seen and edited in place after their layer: their statistics are right (taken as
        produced), their retained gradients are the edited tensor's. Those are left out of this row and
        reported, and from now on gradients come from hooks on the outputs as produced."""
        drop = set()
        for name in edited:
            grad = "act_grad:" + name[len("act:"):]
            drop |= {grad, "stats:" + grad}
            self._changed[grad] += 1
        self._copy_now = True
        return [item for item in items if item[0] not in drop]

    def _without_changed(self, items: list) -> list:
        """A value changed in place after it was captured (`h = self.fc1(x); h.mul_(2)`, `out += identity`)
        is left out of this row and reported; from now on layer outputs are copied when produced, so later
        rows hold them as the layer produced them. Never an error: recording does not end a training run."""
        kept = []
        for item in items:
            name, value, version = item
            if version is not None and value._version != version:
                self._changed[name] += 1
            else:
                kept.append(item)
        self._copy_now = True
        return kept
