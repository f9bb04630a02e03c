"""The decision map: the network's PASS confidence over hours studied × previous score, hours slept held at
the training students' mean (TensorFlow Playground's heatmap, on the real recorded weights)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nn_lesson.lesson.run.record import RunRecord

STUDIED = (0.0, 10.0)
SCORE = (40.0, 100.0)


@dataclass(frozen=True)
class DecisionGrid:
    studied: torch.Tensor      # (columns,) hours studied
    score: torch.Tensor        # (rows,) previous score
    pass_confidence: torch.Tensor  # (rows, columns)
    students: torch.Tensor     # (N, 3) raw features of the training students
    labels: torch.Tensor       # (N,) 0 = PASS


def decision_grid(record: RunRecord, step: int | None = None, size: int = 61) -> DecisionGrid:
    """The map with the weights after `step` (before any step when None)."""
    params = record.initial if step is None else record.log[step].after
    studied = torch.linspace(*STUDIED, size)
    score = torch.linspace(*SCORE, size)
    s, c = torch.meshgrid(score, studied, indexing="ij")
    slept = torch.full_like(s, float(record.training.features[:, 1].mean()))
    raw = torch.stack([c, slept, s], -1).reshape(-1, 3)
    conf = record.predict(params, record.scaler(raw))[:, 0].reshape(size, size)
    return DecisionGrid(studied, score, conf, record.training.features, record.training.labels)
