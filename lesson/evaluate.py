"""Evaluations computed from the recorded weights (vectorised over steps with torch.func), kept in the log.

They are what the lesson text and TensorBoard show beside the steps themselves: the loss and accuracy
on all training students and on the held-out students after every step, and the final predictions.
Storing them as extras makes the snapshot file self-contained: every number the lesson prints is in it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from data import Standardizer, StudentTable
from hooks import SnapshotLog
from lesson.config import LessonConfig, build_loss, confidences, loss_targets


def params_at(log: SnapshotLog, which: str = "after") -> dict[str, torch.Tensor]:
    """Every recorded parameter over all steps: name -> (steps, *shape)."""
    return {name: log.param(name, which) for name in log.param_names}


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


def add_evaluations(log: SnapshotLog, model: nn.Module, config: LessonConfig, scaler: Standardizer,
                    students: StudentTable, initial: dict[str, torch.Tensor]) -> None:
    training, heldout = students.training(), students.held_out()
    log.extras.update({
        "scaler_mean": scaler.mean, "scaler_std": scaler.std,
        "train_raw": training.features, "train_inputs": scaler(training.features), "train_labels": training.labels,
        "heldout_raw": heldout.features, "heldout_inputs": scaler(heldout.features), "heldout_labels": heldout.labels,
    })
    for name, t in initial.items():
        log.extras[f"initial:{name}"] = t
    start = {name: t.unsqueeze(0) for name, t in initial.items()}
    if len(log) and log.has("param_after"):
        after = params_at(log)
        stacked = {name: torch.cat([start[name], after[name]]) for name in start}
    else:
        stacked = start
    # Row 0 is before any step; row s+1 is after step s.
    for split, table in (("train", training), ("heldout", heldout)):
        if len(table) == 0:
            continue
        ev = evaluate_many(model, config, stacked, scaler(table.features), table.labels)
        log.extras[f"{split}_loss_by_step"] = ev["loss"]
        log.extras[f"{split}_accuracy_by_step"] = ev["accuracy"]
        log.extras[f"{split}_confidence_start"] = ev["confidence"][0]
        log.extras[f"{split}_confidence_final"] = ev["confidence"][-1]


def epoch_summary(log: SnapshotLog) -> dict[str, torch.Tensor]:
    """Per epoch: the mean of its step losses (weighted by batch size), and the loss/accuracy on all
    training and held-out students after its last step. Epochs cut short (an interruption) are included."""
    if len(log) == 0:
        return {"epoch": torch.zeros(0, dtype=torch.int64)}
    epoch, batch = log.epoch, log.batch_size.to(torch.float64)
    epochs, counts = torch.unique_consecutive(epoch, return_counts=True)
    ends = counts.cumsum(0) - 1  # last row of each epoch
    seg = torch.repeat_interleave(torch.arange(len(epochs)), counts)
    weighted = torch.zeros(len(epochs), dtype=torch.float64).index_add_(0, seg, log.loss.double() * batch)
    total = torch.zeros(len(epochs), dtype=torch.float64).index_add_(0, seg, batch)
    out = {"epoch": epochs, "end_step": log.step[ends], "step_loss_mean": (weighted / total).to(log.loss.dtype)}
    for key in ("train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy"):
        by_step = log.extras.get(f"{key}_by_step")
        if by_step is not None:
            out[key] = by_step[ends + 1]  # row s+1 is after step s
    return out
