"""The ordinary PyTorch training loop, with a Recorder attached: the lesson's only training code.

A step is one optimizer update; an epoch is one pass over every training student.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

from nn_lesson.data import Standardizer, StudentTable, load_students
from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotLog
from nn_lesson.lesson.run.evaluate import evaluate_steps
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import LessonConfig, build_loss, build_model, loss_targets
from nn_lesson.models import StudentNet


class Diverged(RuntimeError):
    """Training produced a non-finite number; str() names the step, the layer and the quantity."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class LessonSetup:
    """Everything the lesson's loop needs, built from the settings and the students: shared by train() and
    the benchmark, so both run exactly the same loop."""

    scaler: Standardizer
    x: torch.Tensor               # standardised training inputs
    y: torch.Tensor               # loss targets
    model: StudentNet
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    loader: DataLoader            # yields (indices,) of training students, one batch per step

    @classmethod
    def of(cls, config: LessonConfig, students: StudentTable) -> "LessonSetup":
        training = students.training()
        if config.batch_size > len(training):
            raise ValueError(f"batch size {config.batch_size} is larger than the {len(training)} training students")
        torch.manual_seed(config.seed)
        scaler = Standardizer.fit(training.features)
        model = build_model(config)
        loader = DataLoader(TensorDataset(torch.arange(len(training))), batch_size=config.batch_size,
                            shuffle=config.shuffle, generator=torch.Generator().manual_seed(config.seed))
        return cls(scaler, scaler(training.features), loss_targets(config, training.labels), model,
                   torch.optim.SGD(model.parameters(), lr=config.lr), build_loss(config), loader)


def train(config: LessonConfig, students: StudentTable | None = None, *,
          policy: CapturePolicy | None = None, on_epoch: Callable[[int, float], None] | None = None) -> RunRecord:
    """Train StudentNet on the training students with the Recorder attached; returns the run record.

    Raises Diverged (after the log is complete up to the bad step) when a number becomes non-finite;
    KeyboardInterrupt propagates the same way. Either carries the run record so far as `exc.record`.
    """
    students = students if students is not None else load_students()
    setup = LessonSetup.of(config, students)
    model = setup.model
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    rec = Recorder(model, setup.optimizer, setup.loss_fn, steps_per_epoch=len(setup.loader), policy=policy)

    def record(stopped: str | None) -> RunRecord:
        return make_record(config, students, setup, initial, rec.log, stopped, rec.report().line())
    try:
        with rec:
            run_epochs(model, setup.optimizer, setup.loss_fn, setup.loader, setup.x, setup.y, config.epochs, rec,
                       on_epoch)
    except Diverged as err:
        err.record = record(f"diverged: {err}")
        raise
    except KeyboardInterrupt as err:
        err.record = record("interrupted")
        raise
    return record(None)


def make_record(config: LessonConfig, students: StudentTable, setup: LessonSetup, initial: dict[str, torch.Tensor],
                log: SnapshotLog, stopped: str | None = None, coverage: str = "") -> RunRecord:
    """The run record of a finished (or stopped) run: the log plus evaluations of every recorded step."""
    def evaluate(table: StudentTable):
        return evaluate_steps(log, setup.model, config, setup.scaler, initial, table)
    return RunRecord(config, students, setup.scaler, initial, log, evaluate(students.training()),
                     evaluate(students.held_out()), stopped, coverage)


def run_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module,
               loader: DataLoader, x: torch.Tensor, y: torch.Tensor, epochs: int, rec: Recorder | None = None,
               on_epoch: Callable[[int, float], None] | None = None) -> None:
    """The training loop itself; `rec` (optional) only gets told which students each step uses."""
    for epoch in range(epochs):
        total = torch.zeros(())
        for (idx,) in loader:
            if rec is not None:
                rec.mark_samples(idx)  # optional: lets the log say "this step was Sarah"
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            if not torch.isfinite(loss):
                raise Diverged(_divergence_message(rec, loss) if rec is not None else
                               f"training diverged: the loss is {float(loss.detach())}", len(rec.log) if rec else -1)
            optimizer.step()
            total += loss.detach()
        if on_epoch is not None:
            on_epoch(epoch, float(total) / len(loader))


def _divergence_message(rec: Recorder, loss: torch.Tensor) -> str:
    """Name the step, and the first quantity that went non-finite: a gradient or weight of an earlier
    step, or else a layer's activation in this step's forward pass (the row the Recorder was filling)."""
    log = rec.log
    step = len(log)
    culprit = None
    for i in range(len(log) - 1, -1, -1):
        snap = log[i]
        bad = [f"the gradient of {n}" for n, g in snap.grads.items() if not torch.isfinite(g).all()]
        bad += [f"weight {n} after the update" for n, w in snap.after.items() if not torch.isfinite(w).all()]
        if not bad:
            break
        culprit = f"{bad[0]} at step {i}"
    if culprit is None:
        inputs = rec.pending("inputs")
        batch = inputs.shape[0] if inputs is not None else None
        for layer in log.layers:
            value = rec.pending(f"act:{layer}")
            if value is not None and not torch.isfinite(value[:batch]).all():
                culprit = f"the output of layer '{layer}' in step {step}'s forward pass"
                break
    return (f"training diverged at step {step}: the loss is {float(loss.detach())}; first non-finite quantity: "
            f"{culprit or 'the loss itself'}. Try a smaller --lr.")
