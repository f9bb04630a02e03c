"""Evaluations from the recorded weights (vectorised over steps with torch.func): the loss, accuracy and
confidences of all training and held-out students before training and after every recorded step."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from nn_lesson.data import Standardizer, StudentTable
from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.run.record import Evaluation
from nn_lesson.lesson.run.settings import LessonConfig, build_loss, confidences, loss_targets


def evaluate_many(model: nn.Module, config: LessonConfig, params: dict[str, torch.Tensor],
                  x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss, accuracy and confidences of x under each of a stack of weights (leading dim = weight sets)."""
    loss_fn = build_loss(config)
    targets = loss_targets(config, labels)

    def one(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(model, p, (x,))
        return loss_fn(out, targets), confidences(config, out)

    with torch.no_grad():
        loss, conf = vmap(one)(params)
    correct = (conf.argmax(-1) == labels).to(torch.float32)
    return {"loss": loss, "accuracy": correct.mean(-1), "confidence": conf}


# Weight sets evaluated at once × students: bounds the memory of evaluation, whatever the steps × students.
CHUNK_NUMBERS = 1_000_000


def evaluate_steps(log: SnapshotLog, model: nn.Module, config: LessonConfig, scaler: Standardizer,
                   initial: dict[str, torch.Tensor], table: StudentTable) -> Evaluation | None:
    """`table`'s students under the initial weights (row 0) and after every recorded step (row s+1). Only
    the loss and accuracy of each step are kept (and the confidences at the start and the end), computed a
    chunk of steps at a time, so memory stays bounded by the data, not by steps × students."""
    if len(table) == 0:
        return None
    x = scaler(table.features)
    stacked = {name: t.unsqueeze(0) for name, t in initial.items()}
    if len(log) and log.has("param_after"):
        stacked = {name: torch.cat([stacked[name], log.param(name, "after")]) for name in stacked}
    rows = next(iter(stacked.values())).shape[0]
    chunk = max(1, CHUNK_NUMBERS // len(table))
    loss, accuracy, confidence = [], [], []
    for start in range(0, rows, chunk):
        ev = evaluate_many(model, config, {n: t[start:start + chunk] for n, t in stacked.items()}, x, table.labels)
        loss.append(ev["loss"])
        accuracy.append(ev["accuracy"])
        confidence += [ev["confidence"][0]] if start == 0 else []
        last = ev["confidence"][-1]
    return Evaluation(torch.cat(loss), torch.cat(accuracy), confidence[0], last)
