"""TensorBoardRecorderCallback: the hooks' RecorderCallback, and the run written for TensorBoard after `fit`.

    from nn_lesson import TensorBoardRecorderCallback
    callback = TensorBoardRecorderCallback(run_dir="runs/my-lightning-run")
    lightning.Trainer(callbacks=[callback]).fit(model)     # then: tensorboard --logdir runs

Recording is nn_lesson.hooks' (torch only); writing a run folder is the lesson's, so the writing half lives here.
Imports Lightning (`pip install 'nn-lesson[lightning]'`).
"""

from __future__ import annotations

from pathlib import Path

from nn_lesson.hooks.lightning import RecorderCallback
from nn_lesson.hooks.policy import CapturePolicy
from nn_lesson.lesson.board.your_model import write_tensorboard


class TensorBoardRecorderCallback(RecorderCallback):
    def __init__(self, run_dir: str | Path, policy: CapturePolicy | None = None, *, hparams: dict | None = None,
                 **recorder):
        """run_dir: where the run is written after `fit` (write_tensorboard's folder rules; rank 0 only, under DDP).
        hparams: its HParams row (default: the LightningModule's own hparams). The rest: as RecorderCallback."""
        super().__init__(policy, **recorder)
        self.run_dir, self.hparams = run_dir, hparams
        self.written: Path | None = None

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if self._recorder is not None and trainer.is_global_zero:
            hparams = self.hparams if self.hparams is not None else dict(getattr(pl_module, "hparams", {}) or {})
            self.written = write_tensorboard(self._recorder.log, self.run_dir, hparams=hparams or None,
                                             stats=self._recorder.stats_log)
