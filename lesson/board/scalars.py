"""What goes in TensorBoard's Scalars and Histograms dashboards, computed from a SnapshotLog.

Tags are grouped so the sidebar reads like the lesson (TensorBoard sorts groups by name, hence the
numbers): 1 loss, 2 accuracy, 3 weights, 4 gradients, 5 updates, 6 health. There is no scalar per element:
each parameter gets one line per group (its size, the size of its gradient and of its update), so the
sidebar stays at about a dozen groups; the elements themselves are in the Lesson tab (every step, hover a
weight) and in the lesson's per-step tables. Tensors of at most SMALL_TENSOR numbers per step get no
histogram (4-12 numbers make spikes that teach nothing); larger ones (the bridge's layers) do.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.board.events import EventWriter, histogram_protos
from nn_lesson.lesson.story.names import all_weight_names

LESSON_LOSS_TAG = "1 loss/this step's students"
BATCH_LOSS_TAG = "1 loss/this step's batch"
# A tensor with at most this many numbers per step is shown as a per-step table, not as a histogram.
SMALL_TENSOR = 64
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


def entry_names(name: str, shape: tuple[int, ...], lesson_names: bool) -> list[tuple[tuple, str]]:
    if lesson_names:
        return all_weight_names(name, shape)
    return [(idx, f"{name}{list(idx)}") for idx in np.ndindex(*shape)]


def norm(values: torch.Tensor) -> torch.Tensor:
    """(rows, ...) -> (rows,) the Euclidean size of each row."""
    return torch.linalg.vector_norm(values.flatten(1).double(), dim=1).to(values.dtype)


def per_step_tags(log: SnapshotLog, lesson_names: bool
                  ) -> tuple[dict[str, np.ndarray], dict[str, Callable[[], np.ndarray]]]:
    """scalar tag -> (steps,) values, histogram tag -> a function giving its (steps, ...) values; all from the
    log's tensors. The histograms' values are made one tag at a time when written: all of them at once would be
    a second copy of a large model's log (a ResNet's 3.4 GiB log took 11.8 GiB to write)."""
    scalars: dict[str, np.ndarray] = {}
    if log.has("loss"):
        scalars[LESSON_LOSS_TAG if lesson_names else BATCH_LOSS_TAG] = log.loss.numpy()
    if log.has("lr") and not lesson_names:
        scalars["1 loss/learning rate"] = log.values("lr").numpy()
    histograms: dict[str, Callable[[], np.ndarray]] = {}
    if log.has("param_after"):
        for slot in log.params:
            after, grad = log.param(slot.name, "after"), log.param(slot.name, "grad")
            if slot.numel > SMALL_TENSOR:
                histograms[f"weights/{slot.name}"] = lambda n=slot.name: log.param(n, "after").numpy()
                histograms[f"gradients/{slot.name}"] = lambda n=slot.name: log.param(n, "grad").numpy()
                if not lesson_names:
                    histograms[f"updates/{slot.name}"] = lambda n=slot.name: log.param(n, "update").numpy()
            scalars[f"3 weights/size of {slot.name}"] = norm(after).numpy()
            scalars[f"4 gradients/size of {slot.name}"] = norm(grad).numpy()
            scalars[f"5 updates/size of {slot.name}'s update"] = norm(after - log.param(slot.name, "before")).numpy()
            if len(slot.shape) >= 2:
                scalars[f"6 health/update-to-weight ratio {slot.name}"] = update_to_weight_ratio(log, slot.name).numpy()
    for layer in log.layers:
        for column, group in ((f"act:{layer}", "activations"), (f"act_grad:{layer}", "activation gradients")):
            if log.has(column) and len(log) and log.columns[column].at(0).numel() > SMALL_TENSOR:
                histograms[f"{group}/{layer}"] = lambda c=column: log.values(c).numpy()
    return scalars, histograms


def write_scalars(events: EventWriter, log: SnapshotLog, lesson_names: bool = True,
                  row_scalars: dict[str, np.ndarray] | None = None,
                  epoch_scalars: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                  images: Callable[[int], dict[str, bytes]] | None = None,
                  image_steps: int = MAX_DENSE_STEPS,
                  texts: Callable[[int], dict[str, str]] | None = None, with_scalars: bool = True) -> None:
    """Write per-step scalars and histograms from the log plus `row_scalars` (tag -> one value per row),
    with images(row) and texts(row) (tag -> markdown) where given, at up to `image_steps` evenly spaced
    steps (every step when there are fewer), one event per step; then `epoch_scalars`
    (tag -> (epochs, values))."""
    scalars, histograms = per_step_tags(log, lesson_names)
    if not with_scalars:  # another log gives the scalars (every step); this one its histograms
        scalars = {}
    scalars.update(row_scalars or {})
    steps = log.step.tolist()
    dense, pictured = sampled_rows(len(steps)), sampled_rows(len(steps), image_steps)
    protos = {tag: histogram_protos(values(), sorted(dense)) for tag, values in histograms.items()}
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
        if texts is not None and row in pictured:  # per-step tables at the pictured steps, as the diagrams
            for tag, markdown in texts(row).items():
                events.text(tag, markdown, step)
    for tag, (epochs, values) in (epoch_scalars or {}).items():
        events.series(tag, epochs, values)


def write_log(events: EventWriter, log: SnapshotLog) -> None:
    """Any model's log in the lesson's tag layout: from the full values when the log keeps them (every step or
    every k-th), else from the statistics policy's rows (the loss and the update-to-weight ratio)."""
    if log.has("param_after"):
        write_scalars(events, log, lesson_names=False)
        return
    ratios = {name: update_to_weight_ratio(log, name).tolist() for name in log.param_names}
    losses = log.loss.tolist() if log.has("loss") else None
    for row, step in enumerate(log.step.tolist()):
        scalars = {BATCH_LOSS_TAG: losses[row]} if losses is not None else {}
        scalars.update({f"6 health/update-to-weight ratio {name}": r[row] for name, r in ratios.items()})
        events.step(step, scalars)
