"""write_tensorboard: any SnapshotLog (your own model, recorded by the Recorder) as a TensorBoard run.

    with Recorder(model, opt) as rec:
        ...                                          # your loop
    write_tensorboard(rec.log, "runs/my-convnet", hparams={"lr": 0.01})

The run folder follows the CLI's rules: claimed before anything is written, written aside and moved into place
complete, an existing run never overwritten (a taken name is numbered, as the CLI numbers its default names). It
holds the log's `snapshots.npz` (the Lesson tab draws it as the model view), `statistics.npz` when given, and event
files for TensorBoard's own dashboards:

- Scalars, every step (from the statistics of every step when given, else from the log): `1 loss/this step's batch`
  and `1 loss/learning rate`; per parameter `3 weights/size of P`, `5 updates/size of P's update` and the health
  of each layer, `6 health/gradient norm P` and `6 health/update-to-weight ratio P` (weights of 2 or more dimensions,
  Karpathy's std(update) / std(weight), about 1e-3 is healthy);
- Custom Scalars: every layer's update-to-weight ratio on one chart, and every gradient norm on another;
- Histograms and Distributions, named by module path: `M/weight`, `M/weight.grad`, `M/weight.update` for every
  parameter of module M (whatever its size), `M/output` and `M/output.grad` for every recorded layer's output,
  at the full rows' steps (at most MAX_DENSE_STEPS of them); from a statistics-only log, its statistics' 16-bin
  histograms at every step;
- HParams: one row, the knobs given (by default the first step's lr and the number of recorded steps) and the final
  loss.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.tensorboard.summary import custom_scalars

import re

from tensorboard.compat.proto.summary_pb2 import HistogramProto

from nn_lesson.hooks import SnapshotLog
from nn_lesson.hooks.statistics import STAT_NAMES
from nn_lesson.lesson.board.events import EventWriter, histogram_protos
from nn_lesson.lesson.board.scalars import BATCH_LOSS_TAG, sampled_rows, update_to_weight_ratio
from nn_lesson.lesson.run.folder import check_name, claim_run, write_run
from nn_lesson.lesson.run.record import SNAPSHOT_FILE

FINAL_LOSS = "hparams/final loss"
STATISTICS_FILE = "statistics.npz"  # the statistics of every step, beside the full rows every k-th step


def write_tensorboard(log: SnapshotLog, run_dir: str | Path, hparams: dict[str, object] | None = None,
                      stats: SnapshotLog | None = None) -> Path:
    """Write `log` as the run folder `run_dir` (its parent is the logdir to open in TensorBoard), or as
    `run_dir`-2, -3, ... when that name is taken; returns the folder written. Refuses (RunDirError, a ValueError)
    a name that is not a plain folder name or a logdir that cannot be written. `stats`: the statistics of every
    step a Recorder kept beside full rows every k-th step (rec.stats_log): saved as statistics.npz, and the
    per-step scalars come from it (every step) while the histograms come from the full rows. `hparams`: the knobs of
    the HParams row (by default the first step's lr and the number of recorded steps)."""
    if not isinstance(log, SnapshotLog):
        raise TypeError(f"write_tensorboard: log must be a SnapshotLog (rec.log), not {type(log).__name__}")
    if len(log) == 0:
        raise ValueError("write_tensorboard: the log holds no steps (no optimizer step ran while recording); "
                         "nothing to write")
    run_dir = Path(run_dir)
    check_name(run_dir.name)
    # Numbered like the CLI's own run names when taken (my-run, my-run-2, ...): a script run twice keeps both.
    claim = claim_run(run_dir.parent, None, run_dir.name, overwrite=False)

    def fill(folder: Path) -> None:
        log.save(folder / SNAPSHOT_FILE)
        if stats is not None:
            stats.save(folder / STATISTICS_FILE)
        with EventWriter(folder) as events:
            write_model_events(events, log, stats)
            _write_hparams(events, log, hparams if hparams else default_hparams(log))
    return write_run(claim, fill)


HEALTH_RATIO = "6 health/update-to-weight ratio "
HEALTH_GRAD = "6 health/gradient norm "


def module_tag(param_or_layer: str, what: str) -> str:
    """The Histograms tag of a parameter (`layers.0.conv1.weight`, "" -> `layers.0.conv1/weight`, `.grad` ->
    `layers.0.conv1/weight.grad`) or of a layer's output (`layers.0.conv1`, "output"); a parameter of the model
    itself sits under `(model)`."""
    if what in ("output", "output.grad"):
        return f"{param_or_layer or '(model)'}/{what}"
    module, _, leaf = param_or_layer.rpartition(".")
    return f"{module or '(model)'}/{leaf}{what}"


def write_model_events(events: EventWriter, log: SnapshotLog, stats: SnapshotLog | None = None) -> None:
    """Scalars of every step (from `stats` when given, else from `log`, full or statistics-only), the custom-scalars
    layout, and the histograms named by module path (from the full rows of `log`, else from its statistics)."""
    source = stats if stats is not None else log
    scalars = health_scalars(source)
    for row, step in enumerate(source.step.tolist()):
        events.step(step, {tag: values[row] for tag, values in scalars.items()})
    events.add(custom_scalars(custom_layout()))
    steps = log.step.tolist()
    rows = sorted(sampled_rows(len(steps)))
    at: dict[int, dict[str, HistogramProto]] = {}          # row -> tag -> histogram: one event a step
    for tag, by_row in _histograms(log, rows):
        for row, proto in by_row.items():
            at.setdefault(row, {})[tag] = proto
    for row in sorted(at):
        events.step(steps[row], histograms=at[row])


def health_scalars(log: SnapshotLog) -> dict[str, list[float]]:
    """tag -> one value per row: the loss, the lr, and per parameter its size, its update's size, its gradient's
    norm and (2 or more dimensions) its update-to-weight ratio; from the full values where the log keeps them, else
    from its statistics."""
    out: dict[str, list[float]] = {}
    if log.has("loss"):
        out[BATCH_LOSS_TAG] = log.loss.tolist()
    if log.has("lr"):
        out["1 loss/learning rate"] = log.values("lr").tolist()
    full = log.has("param_after")
    for slot in log.params:
        name = slot.name
        if full:
            before, after = log.param(name, "before"), log.param(name, "after")
            size, grad, update = _norm(after), _norm(log.param(name, "grad")), _norm(after - before)
        elif log.has(f"stats:{name}:value"):
            size, update = log.stat(f"{name}:value", "norm"), log.stat(f"{name}:update", "norm")
            grad = log.stat(f"{name}:grad", "norm") if log.has(f"stats:{name}:grad") else None
        else:
            continue
        out[f"3 weights/size of {name}"] = size.tolist()
        out[f"5 updates/size of {name}'s update"] = update.tolist()
        if grad is not None:
            out[HEALTH_GRAD + name] = grad.tolist()
        if len(slot.shape) >= 2:
            out[HEALTH_RATIO + name] = update_to_weight_ratio(log, name).tolist()
    return out


def custom_layout() -> dict:
    """TensorBoard's Custom Scalars: every layer's health on one chart each (Karpathy's "all layers at once")."""
    return {"health of every layer": {
        "update-to-weight ratio of every weight (about 1e-3 is healthy)": ["Multiline", ["^" + re.escape(HEALTH_RATIO)]],
        "gradient norm of every parameter": ["Multiline", ["^" + re.escape(HEALTH_GRAD)]],
        "loss of each step's batch": ["Multiline", ["^" + re.escape(BATCH_LOSS_TAG) + "$"]],
    }}


def _histograms(log: SnapshotLog, rows: list[int]):
    """(tag, {row: HistogramProto}) one tag at a time (a large model's log is never copied whole): every parameter's
    value after the step, gradient and update, and every recorded layer's output and output gradient."""
    if log.has("param_after"):
        for slot in log.params:
            name = slot.name
            yield module_tag(name, ""), histogram_protos(log.param(name, "after"), rows)
            yield module_tag(name, ".grad"), histogram_protos(log.param(name, "grad"), rows)
            yield module_tag(name, ".update"), histogram_protos(log.param(name, "update"), rows)
        for layer in log.layers:
            for column, what in ((f"act:{layer}", "output"), (f"act_grad:{layer}", "output.grad")):
                values = log.values(column) if log.has(column) else None
                if values is not None and values.is_floating_point():
                    yield module_tag(layer, what), histogram_protos(values, rows)
                del values
        return
    stat_rows = list(range(len(log)))          # a statistics-only log: its histograms at every step
    for slot in log.params:
        for key, what in ((f"{slot.name}:value", ""), (f"{slot.name}:grad", ".grad"), (f"{slot.name}:update", ".update")):
            if log.has(f"stats:{key}"):
                yield module_tag(slot.name, what), _stat_protos(log, key, stat_rows)
    for layer in log.layers:
        for key, what in ((f"act:{layer}", "output"), (f"act_grad:{layer}", "output.grad")):
            if log.has(f"stats:{key}"):
                yield module_tag(layer, what), _stat_protos(log, key, stat_rows)


def _stat_protos(log: SnapshotLog, key: str, rows: list[int]) -> dict[int, HistogramProto]:
    """TensorBoard histograms from the Recorder's statistics rows: even buckets over [min, max] with its counts
    (scaled to the tensor's length where it was sampled), the sum from the mean and the sum of squares from the
    norm; rows whose statistics are absent (NaN) left out."""
    values = log.values(f"stats:{key}").double()
    n = len(STAT_NAMES)
    out = {}
    for row in rows:
        mean, _, norm, lo, hi = values[row, :n].tolist()
        counts = values[row, n:].tolist()
        if not all(math.isfinite(v) for v in (mean, norm, lo, hi, *counts)):
            continue
        total = sum(counts)
        width = max((hi - lo) / len(counts), 1e-12)
        out[row] = HistogramProto(min=lo, max=hi, num=total, sum=mean * total, sum_squares=norm * norm,
                                  bucket_limit=[lo + width * (i + 1) for i in range(len(counts))], bucket=counts)
    return out


def _norm(values: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(values.flatten(1).double(), dim=1)


def default_hparams(log: SnapshotLog) -> dict[str, object]:
    """The HParams row's knobs when none are given: the first step's lr (where recorded) and the recorded steps."""
    knobs: dict[str, object] = {}
    if log.has("lr") and len(log) and math.isfinite(float(log.values("lr")[0])):
        knobs["lr"] = float(log.values("lr")[0])
    knobs["recorded steps"] = len(log)
    return knobs


def _write_hparams(events: EventWriter, log: SnapshotLog, hparams: dict[str, object]) -> None:
    """One HParams row: the user's knobs (numbers, strings and booleans as TensorBoard takes them) and the
    final loss."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary
    knobs = {str(k): v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
    metrics = {FINAL_LOSS: float(log.loss[-1])} if log.has("loss") and len(log) and torch.isfinite(log.loss[-1]) else {}
    for summary in hparams_summary(knobs, metrics):
        events.add(summary)
    if metrics:
        events.step(int(log.step[-1]), scalars=metrics)
