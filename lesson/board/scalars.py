"""What goes in TensorBoard's Scalars and Histograms dashboards, computed from a SnapshotLog.

Tags are grouped so the sidebar reads like the lesson (TensorBoard sorts groups by name, hence the
numbers): 1 loss, 2 accuracy, 3 weights, 4 gradients, 5 biases, 6 health.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.board.events import EventWriter, histogram_protos
from nn_lesson.lesson.story.names import all_weight_names

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


def update_to_weight_ratio(log: SnapshotLog, name: str) -> torch.Tensor:
    """Karpathy's health check per recorded step: std(update) / std(weight before the step); about 1e-3 is
    healthy. From the full values when the log has them, else from the statistics policy's rows."""
    if log.has("param_after"):
        before = log.param(name, "before").flatten(1)
        return log.param(name, "update").flatten(1).std(1, correction=0) / before.std(1, correction=0)
    return log.stat(f"{name}:update", "std") / log.stat(f"{name}:value", "std")


def entry_names(log: SnapshotLog, name: str, shape: tuple[int, ...], lesson_names: bool) -> list[tuple[tuple, str]]:
    if lesson_names:
        return all_weight_names(name, shape)
    return [(idx, f"{name}{list(idx)}") for idx in np.ndindex(*shape)]


def per_step_tags(log: SnapshotLog, lesson_names: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """scalar tag -> (steps,) values, histogram tag -> (steps, ...) values; all from the log's tensors."""
    scalars: dict[str, np.ndarray] = {}
    if log.has("loss"):
        scalars["1 loss/this step's students"] = log.loss.numpy()
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
                scalars[f"6 health/update-to-weight ratio {slot.name}"] = update_to_weight_ratio(log, slot.name).numpy()
    for layer in log.layers:
        if log.has(f"act:{layer}"):
            histograms[f"activations/{layer}"] = log.activation(layer).numpy()
        if log.has(f"act_grad:{layer}"):
            histograms[f"activation gradients/{layer}"] = log.activation_grad(layer).numpy()
    return scalars, histograms


def write_scalars(events: EventWriter, log: SnapshotLog, lesson_names: bool = True,
                  row_scalars: dict[str, np.ndarray] | None = None,
                  epoch_scalars: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  images: Callable[[int], dict[str, bytes]] | None = None,
                  image_steps: int = MAX_DENSE_STEPS) -> None:
    """Write per-step scalars and histograms from the log plus `row_scalars` (tag -> one value per row),
    with images(row) where given, one event per step; then `epoch_scalars` (tag -> (epochs, values))."""
    scalars, histograms = per_step_tags(log, lesson_names)
    scalars.update(row_scalars or {})
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
    for tag, (epochs, values) in (epoch_scalars or {}).items():
        events.series(tag, epochs, values)
