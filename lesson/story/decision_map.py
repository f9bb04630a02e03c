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
    student_pass: torch.Tensor  # (N,) the network's PASS confidence for each student, at their own sleep
    slept: float               # the hours slept at which the map is drawn

    @property
    def answers(self) -> torch.Tensor:
        """(N,) the network's answer for each student at their own inputs: 0 = PASS, 1 = FAIL. A dot is drawn in
        this colour, so no dot contradicts the network where the map (at another sleep) would."""
        return (self.student_pass < 0.5).long()


def decision_grid(record: RunRecord, step: int | None = None, size: int = 61) -> DecisionGrid:
    """The map with the weights after `step` (before any step when None)."""
    params = record.initial if step is None else record.log[step].after
    studied = torch.linspace(*STUDIED, size)
    score = torch.linspace(*SCORE, size)
    s, c = torch.meshgrid(score, studied, indexing="ij")
    held = float(record.training.features[:, 1].mean())
    raw = torch.stack([c, torch.full_like(s, held), s], -1).reshape(-1, 3)
    conf = record.predict(params, record.scaler(raw))[:, 0].reshape(size, size)
    features = record.training.features
    own = record.predict(params, record.scaler(features))[:, 0]
    return DecisionGrid(studied, score, conf, features, record.training.labels, own, held)
