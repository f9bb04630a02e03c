"""What goes in TensorBoard's Scalars and Histograms dashboards, computed from a SnapshotLog.

Tags are grouped so the sidebar reads like the lesson (TensorBoard sorts groups by name, hence the
numbers): 1 loss, 2 accuracy, 3 weights, 4 gradients, 5 biases, 6 health.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from hooks import SnapshotLog
from lesson.evaluate import epoch_summary
from lesson.names import all_weight_names
from lesson.tb_events import HISTOGRAM_BINS, EventWriter
from tensorboard.compat.proto.summary_pb2 import HistogramProto

# A parameter with more entries than this gets histograms but no scalar per entry.
MAX_SCALARS_PER_PARAM = 64
# Scalars are written for every step; histograms and images for at most this many (evenly spaced) steps,
# so a long run still writes in seconds (TensorBoard itself samples far fewer for display).
MAX_DENSE_STEPS = 1000


def sampled_rows(n: int, limit: int = MAX_DENSE_STEPS) -> set[int]:
    """Every row when there are few; else `limit` evenly spaced rows, first and last included."""
    if n <= limit:
        return set(range(n))
    return {int(i) for i in torch.linspace(0, n - 1, limit).round()}


def update_ratio(log: SnapshotLog, name: str) -> torch.Tensor:
    """Karpathy's health check per step: std(update) / std(weight before the step); about 1e-3 is healthy."""
    before = log.param(name, "before").flatten(1)
    return log.param(name, "update").flatten(1).std(1) / before.std(1)


def entry_names(log: SnapshotLog, name: str, shape: tuple[int, ...], lesson_names: bool) -> list[tuple[tuple, str]]:
    if lesson_names:
        return all_weight_names(name, shape)
    return [(idx, f"{name}{list(idx)}") for idx in np.ndindex(*shape)]


def per_step_tags(log: SnapshotLog, lesson_names: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """scalar tag -> (steps,) values, histogram tag -> (steps, ...) values; all from the log's tensors."""
    scalars: dict[str, np.ndarray] = {}
    if log.has("loss"):
        scalars["1 loss/this step's students"] = log.loss.numpy()
    for split, label in (("train", "all training students"), ("heldout", "held-out students")):
        if f"{split}_loss_by_step" in log.extras:
            scalars[f"1 loss/{label}"] = log.extras[f"{split}_loss_by_step"][1:].numpy()
            scalars[f"2 accuracy/{label}"] = log.extras[f"{split}_accuracy_by_step"][1:].numpy()
    histograms: dict[str, np.ndarray] = {}
    if log.has("param_after"):
        for slot in log.params:
            after, grad = log.param(slot.name, "after"), log.param(slot.name, "grad")
            histograms[f"weights/{slot.name}"] = after.numpy()
            histograms[f"gradients/{slot.name}"] = grad.numpy()
            if slot.numel <= MAX_SCALARS_PER_PARAM:
                group = ("5 biases", "4 gradients/bias ") if len(slot.shape) == 1 else ("3 weights", "4 gradients/")
                for idx, label in entry_names(log, slot.name, slot.shape, lesson_names):
                    column = (slice(None), *idx)
                    scalars[f"{group[0]}/{label}"] = after[column].numpy()
                    scalars[f"{group[1]}{label}"] = grad[column].numpy()
            if len(slot.shape) >= 2:
                scalars[f"6 health/update-to-weight ratio {slot.name}"] = update_ratio(log, slot.name).numpy()
    for layer in log.layers:
        if log.has(f"act:{layer}"):
            histograms[f"activations/{layer}"] = log.activation(layer).numpy()
        if log.has(f"act_grad:{layer}"):
            histograms[f"activation gradients/{layer}"] = log.activation_grad(layer).numpy()
    return scalars, histograms


def write_scalars(events: EventWriter, log: SnapshotLog, lesson_names: bool = True,
                  images: Callable[[int], dict[str, bytes]] | None = None,
                  image_steps: int = MAX_DENSE_STEPS) -> None:
    """Write per-step scalars/histograms (one event per step, with images(row) if given) and per-epoch
    scalars."""
    scalars, histograms = per_step_tags(log, lesson_names)
    steps = log.step.tolist()
    dense, pictured = sampled_rows(len(steps)), sampled_rows(len(steps), image_steps)
    protos = {tag: histogram_protos(values, sorted(dense)) for tag, values in histograms.items()}
    scalar_rows = {tag: values.tolist() for tag, values in scalars.items()}
    pictures = {}
    if images is not None:  # drawing and PNG encoding release the GIL for much of the time: use both cores
        with ThreadPoolExecutor(max_workers=2) as pool:
            pictures = dict(zip(sorted(pictured), pool.map(images, sorted(pictured))))
    for row, step in enumerate(steps):
        events.step(step,
                    {tag: values[row] for tag, values in scalar_rows.items()},
                    {tag: by_row[row] for tag, by_row in protos.items() if row in by_row},
                    pictures.get(row))
    epochs = epoch_summary(log)
    epoch_tags = {
        "1 loss/epoch: mean of its steps": "step_loss_mean", "1 loss/epoch: all training students": "train_loss",
        "1 loss/epoch: held-out students": "heldout_loss", "2 accuracy/epoch: training students": "train_accuracy",
        "2 accuracy/epoch: held-out students": "heldout_accuracy",
    }
    numbers = (epochs["epoch"] + 1).numpy()  # epochs are counted from 1 on the x axis
    for tag, key in epoch_tags.items():
        if key in epochs:
            events.series(tag, numbers, epochs[key].numpy())


def histogram_protos(values: np.ndarray, rows: list[int], bins: int = HISTOGRAM_BINS) -> dict[int, HistogramProto]:
    """TensorBoard histograms of many steps at once: `bins` even buckets over each step's own range,
    counted for all steps with one vectorised pass (NaN padding and non-finite values left out)."""
    t = torch.from_numpy(np.ascontiguousarray(values[rows])).reshape(len(rows), -1).double()
    finite = torch.isfinite(t)
    lo = torch.where(finite, t, torch.inf).amin(1)
    hi = torch.where(finite, t, -torch.inf).amax(1)
    width = (hi - lo).clamp_min(1e-12) / bins
    idx = ((t - lo[:, None]) / width[:, None]).floor().clamp(0, bins - 1).nan_to_num(0).long()
    idx += torch.arange(len(rows))[:, None] * bins
    counts = torch.bincount(idx[finite], minlength=len(rows) * bins).view(len(rows), bins).double()
    zero = torch.zeros((), dtype=torch.float64)
    sums = torch.where(finite, t, zero).sum(1)
    squares = torch.where(finite, t * t, zero).sum(1)
    num = finite.sum(1)
    out = {}
    for k, row in enumerate(rows):
        if num[k] == 0:
            continue
        edges = (lo[k] + width[k] * torch.arange(1, bins + 1)).tolist()
        out[row] = HistogramProto(min=float(lo[k]), max=float(hi[k]), num=int(num[k]), sum=float(sums[k]),
                                  sum_squares=float(squares[k]), bucket_limit=edges, bucket=counts[k].tolist())
    return out
