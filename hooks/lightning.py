"""RecorderCallback: the Recorder inside PyTorch Lightning's own loop.

    from nn_lesson.hooks.lightning import RecorderCallback
    callback = RecorderCallback()      # nn_lesson.TensorBoardRecorderCallback(run_dir=...) also writes the run
    trainer = lightning.Trainer(max_epochs=3, callbacks=[callback])
    trainer.fit(model)
    callback.log[0].grads["net.conv.weight"]; callback.report()

The callback opens a Recorder on the LightningModule and its optimizer when training starts and closes it when
training ends (or fails), so every hook and wrapper is gone after `fit`. Under automatic optimization Lightning
runs the forward and backward inside the closure it hands to `optimizer.step`; the Recorder reads a step's
forward, loss and gradients there, after Lightning's gradient clipping. Gradient accumulation, clipping,
`precision="bf16-mixed"` and manual optimization (`self.manual_backward`, `opt.step()`) all end in the real
optimizer's step, which defines the row. Writing the run for TensorBoard is the lesson's business, not the hooks':
nn_lesson.lesson.board.lightning.TensorBoardRecorderCallback adds it (rank 0 writes, under DDP).

The one module of nn_lesson.hooks that imports something beyond torch: Lightning, and only when this module is
imported (`pip install 'nn-lesson[lightning]'`).
"""

from __future__ import annotations

from pathlib import Path

try:
    from lightning.pytorch import LightningModule
    from lightning.pytorch.callbacks import Callback
except ImportError:
    try:
        from pytorch_lightning import LightningModule  # the older package name, same API
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise ImportError("nn_lesson.hooks.lightning needs PyTorch Lightning: pip install 'nn-lesson[lightning]'") from None

from nn_lesson.hooks.policy import CapturePolicy
from nn_lesson.hooks.recorder import Recorder
from nn_lesson.hooks.report import Report
from nn_lesson.hooks.snapshot_log import SnapshotLog


def recorded_module(pl_module):
    """The module whose forward a step calls: the LightningModule when it defines forward (training_step calls
    self(x)), else its one child module (training_step calls self.net(x)), else the LightningModule itself."""
    if type(pl_module).forward is not LightningModule.forward:
        return pl_module
    children = [m for m in pl_module.children() if any(True for _ in m.parameters())]
    return children[0] if len(children) == 1 else pl_module


class RecorderCallback(Callback):
    def __init__(self, policy: CapturePolicy | None = None, *, loss_fn=None, memory_budget: int | None = None,
                 stream_to: str | Path | None = None, **moved):
        """policy: what to keep (the Recorder's default when None). loss_fn: an nn.Module loss your training_step
        calls, if any (a functional loss is seen without it). memory_budget, stream_to: as for Recorder."""
        if moved:
            raise TypeError(f"RecorderCallback: no argument {', '.join(map(repr, moved))}"
                            + ("; run_dir= and hparams= are TensorBoardRecorderCallback's (from nn_lesson), the same "
                               "callback that also writes the run for TensorBoard after fit"
                               if {"run_dir", "hparams"} & set(moved) else ""))
        self.policy, self.loss_fn = policy, loss_fn
        self.memory_budget, self.stream_to = memory_budget, stream_to
        self._recorder: Recorder | None = None
        self._module_log = None

    # ---- what a user reads after fit ----
    @property
    def log(self) -> SnapshotLog:
        """The recorded steps. (Lightning assigns its module's `log` method to every callback's `.log` when a fit
        starts; that is kept aside, and `.log` is the SnapshotLog once recording has begun.)"""
        if self._recorder is None:
            if self._module_log is not None:
                return self._module_log
            raise RuntimeError("RecorderCallback: nothing recorded yet; pass it to Trainer(callbacks=[...]) and fit")
        return self._recorder.log

    @log.setter
    def log(self, value) -> None:
        self._module_log = value

    def report(self) -> Report:
        if self._recorder is None:
            raise RuntimeError("RecorderCallback: nothing recorded yet; pass it to Trainer(callbacks=[...]) and fit")
        return self._recorder.report()

    # ---- Lightning's hooks ----
    def on_train_start(self, trainer, pl_module) -> None:
        optimizers = trainer.optimizers
        if len(optimizers) != 1:
            raise RuntimeError(f"RecorderCallback: records one optimizer; this module configures {len(optimizers)} "
                               "(record a single-optimizer module, or use Recorder directly on each)")
        optimizer = getattr(optimizers[0], "optimizer", optimizers[0])   # the real optimizer, not Lightning's wrapper
        batches = trainer.num_training_batches
        every = getattr(trainer, "accumulate_grad_batches", 1) or 1
        steps_per_epoch = None if batches == float("inf") else -(-int(batches) // every)
        self._recorder = Recorder(recorded_module(pl_module), optimizer, self.loss_fn,
                                  steps_per_epoch=steps_per_epoch, policy=self.policy,
                                  memory_budget=self.memory_budget, stream_to=self.stream_to)
        self._recorder.start()
        self._checked = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """After the first optimizer step: a training_step that calls no forward the Recorder watches would
        leave every row without activations or loss; say so at once instead."""
        if self._checked or self._recorder is None or self._recorder.report().steps == 0:
            return
        self._checked = True
        report = self._recorder.report()
        if not report.calls:
            self._recorder.close()
            raise RuntimeError(
                "RecorderCallback: the first step ran no forward of the recorded module "
                f"({type(recorded_module(pl_module)).__name__}); call self(x) in training_step (and define "
                "forward), or keep the layers in one submodule that training_step calls")

    def on_train_end(self, trainer, pl_module) -> None:
        if self._recorder is not None:
            self._recorder.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self._recorder is not None:
            self._recorder.close()            # no hook or wrapper outlives a failed fit
