"""The simplest model that could answer the lesson's question: logistic regression on the same standardised
inputs, no hidden layer (one straight boundary). Beside the network it shows what the hidden layer adds."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nn_lesson.lesson.run.record import RunRecord

RIDGE = 1e-3  # a little weight decay keeps the weights finite when a straight line separates the students


@dataclass(frozen=True)
class Baseline:
    weights: torch.Tensor     # (3,) log-odds of PASS per one spread of each input
    bias: torch.Tensor
    train_right: int
    heldout_right: int | None


def logistic_baseline(record: RunRecord) -> Baseline:
    """Fitted in float64 with L-BFGS to convergence: deterministic, independent of the network's training."""
    x = record.scaler(record.training.features).double()
    y = (record.training.labels == 0).double()  # 1 = PASS
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + RIDGE * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    w, b = w.detach(), b.detach()

    def right(table) -> int:
        xs = record.scaler(table.features).double()
        return int((((xs @ w + b) > 0) == (table.labels == 0)).sum())
    held = record.held_out
    return Baseline(w, b, right(record.training), right(held) if len(held) else None)
