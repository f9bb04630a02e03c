"""Each student's own gradient at a step (per-sample gradients with torch.func: vmap over grad of
functional_call, as in PyTorch's per-sample-gradient tutorial), and what the step did to each student.

The step moves every weight by −lr × g, g being the batch's gradient. To first order, student i's loss
then changes by −lr × (gᵢ · g): the step helps a student whose own gradient points the same way as g
(positive dot product) and hurts one whose gradient points against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call, grad, vmap

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import build_loss, loss_targets


@dataclass(frozen=True)
class StepEffect:
    loss_before: torch.Tensor      # (students,) each training student's loss before the step
    loss_after: torch.Tensor       # (students,) after it
    conf_before: torch.Tensor      # (students, 2)
    conf_after: torch.Tensor
    grads: dict[str, torch.Tensor]  # each student's own gradient: name -> (students, *shape)
    agreement: torch.Tensor        # (students,) gᵢ · g, over every parameter
    predicted_change: torch.Tensor  # (students,) −lr × gᵢ · g, the first-order change of each loss


def per_student_grads(record: RunRecord, params: dict[str, torch.Tensor], x: torch.Tensor,
                      targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """d loss_i / d params for every row of x, one vectorised call."""
    loss_fn = build_loss(record.config)

    def loss_of_one(p: dict[str, torch.Tensor], xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(record.model, p, (xi.unsqueeze(0),)), ti.unsqueeze(0))
    return vmap(grad(loss_of_one), in_dims=(None, 0, 0))(params, x, targets)


def per_student_losses(record: RunRecord, params: dict[str, torch.Tensor], x: torch.Tensor,
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss_fn = build_loss(record.config)
    with torch.no_grad():
        out = functional_call(record.model, params, (x,))
        losses = torch.stack([loss_fn(out[i:i + 1], targets[i:i + 1]) for i in range(len(x))])
    return losses, record.confidences(out)


def step_effect(record: RunRecord, step: int) -> StepEffect:
    snap = record.log[step]
    training = record.training
    x, targets = record.scaler(training.features), loss_targets(record.config, training.labels)
    before, after = snap.before, snap.after
    loss_before, conf_before = per_student_losses(record, before, x, targets)
    loss_after, conf_after = per_student_losses(record, after, x, targets)
    grads = per_student_grads(record, before, x, targets)
    agreement = sum((grads[n].flatten(1) * snap.grads[n].flatten()).sum(1) for n in snap.grads)
    return StepEffect(loss_before, loss_after, conf_before, conf_after, grads, agreement, -snap.lr * agreement)
