"""LessonView: a SnapshotLog (fresh, or loaded from a file) plus what is needed to read it as the lesson."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from data import CLASSES
from hooks import SnapshotLog
from lesson.config import LessonConfig, build_model, confidences
from models import StudentNet


@dataclass
class LessonView:
    log: SnapshotLog
    config: LessonConfig
    model: StudentNet  # architecture for functional_call; its own weights are never used

    @classmethod
    def of(cls, log: SnapshotLog) -> "LessonView":
        config = LessonConfig(**log.meta["config"])
        return cls(log, config, build_model(config))

    @property
    def names(self) -> list[str]:
        return self.log.meta["sample_names"]

    @property
    def heldout_names(self) -> list[str]:
        return self.log.meta["heldout_names"]

    def students_of(self, step: int) -> list[str]:
        samples = self.log[step].samples
        return [self.names[int(i)] for i in samples] if samples is not None else []

    def confidences(self, outputs: torch.Tensor) -> torch.Tensor:
        return confidences(self.config, outputs)

    def initial(self) -> dict[str, torch.Tensor]:
        return {name: self.log.extras[f"initial:{name}"] for name in self.log.param_names}

    def final(self) -> dict[str, torch.Tensor]:
        return self.log[-1].after if len(self.log) else self.initial()

    def predict(self, params: dict[str, torch.Tensor], scaled_inputs: torch.Tensor) -> torch.Tensor:
        """PASS/FAIL confidences of the network with `params` on already standardised inputs."""
        with torch.no_grad():
            return self.confidences(functional_call(self.model, params, (scaled_inputs,)))

    def scale(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.log.extras["scaler_mean"]) / self.log.extras["scaler_std"]

    @staticmethod
    def label(index: int | torch.Tensor) -> str:
        return CLASSES[int(index)]
