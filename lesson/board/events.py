"""TensorBoard event files written directly: one event per step holding all of that step's scalars,
histograms and images.

An event file is a sequence of TFRecords: length (8 bytes, little-endian), masked CRC-32C of the
length, the serialized `Event` proto, masked CRC-32C of the data. TensorBoard's own writer computes
that CRC in pure Python when TensorFlow is absent (about 80 ms per MB, most of a lesson's export), so
this module frames the records itself with google-crc32c. It uses only public protos and summary
functions; tests read the files back with TensorBoard's own EventAccumulator.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

import google_crc32c
import numpy as np
import torch
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import text

from nn_lesson.hooks.statistics import row_stats

# TensorBoard's own default bucket list has ~1500 edges: at lesson scale that is megabytes of mostly
# empty buckets per run. 30 even buckets over each tensor's range show the shape just as well.
HISTOGRAM_BINS = 30


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated right by 15 bits plus a constant."""
    x = google_crc32c.value(data)
    return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def png_image(png: bytes) -> Summary.Image:
    """TensorBoard's image record for already-encoded PNG bytes (size read from the PNG header)."""
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)


def histogram_protos(values: np.ndarray | torch.Tensor, rows: list[int],
                     bins: int = HISTOGRAM_BINS) -> dict[int, HistogramProto]:
    """TensorBoard histograms of many steps at once, counted by the Recorder's own row_stats (one pass for
    all rows): `bins` even buckets over each row's range, NaN padding and non-finite values left out."""
    t = torch.as_tensor(values)[rows].reshape(len(rows), -1).double()
    stats = row_stats(t, bins)
    num = torch.isfinite(t).sum(1)
    out = {}
    for k, row in enumerate(rows):
        if num[k] == 0:
            continue
        mean, _, norm, lo, hi = stats[k, :5].tolist()
        width = max((hi - lo) / bins, 1e-12)  # a constant row: every value in the first bucket
        out[row] = HistogramProto(min=lo, max=hi, num=int(num[k]), sum=mean * int(num[k]), sum_squares=norm * norm,
                                  bucket_limit=[lo + width * (i + 1) for i in range(bins)],
                                  bucket=stats[k, 5:].tolist())
    return out


class EventWriter:
    """Appends events to one new event file in `run_dir`. Use as a context manager or call close()."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.nn-lesson"
        self._file = open(self.run_dir / name, "xb")
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, event: Event) -> None:
        data = event.SerializeToString()
        length = struct.pack("<Q", len(data))
        self._file.write(length + struct.pack("<I", masked_crc32c(length)) + data
                         + struct.pack("<I", masked_crc32c(data)))

    def add(self, summary: Summary, step: int = 0) -> None:
        self._write(Event(wall_time=time.time(), step=step, summary=summary))

    def step(self, step: int, scalars: dict[str, float] | None = None,
             histograms: dict[str, HistogramProto] | None = None, images: dict[str, bytes] | None = None) -> None:
        """Write one event at `step` holding every given scalar, histogram and PNG."""
        values = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in (scalars or {}).items()]
        values += [Summary.Value(tag=tag, image=png_image(png)) for tag, png in (images or {}).items()]
        values += [Summary.Value(tag=tag, histo=proto) for tag, proto in (histograms or {}).items()]
        if values:
            self.add(Summary(value=values), step)

    def series(self, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
        for s, v in zip(steps.tolist(), values.tolist()):
            self.add(Summary(value=[Summary.Value(tag=tag, simple_value=v)]), s)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """Markdown for the Text dashboard under exactly `tag` (add_text would append '/text_summary')."""
        summary = text(tag, markdown)
        summary.value[0].tag = tag
        self.add(summary, step)

    def graph(self, model: torch.nn.Module, example_input: torch.Tensor) -> None:
        """The Graphs dashboard: torch's own tracer, through its public SummaryWriter (a second, small
        event file in the same folder; TensorBoard reads every event file of a run)."""
        with SummaryWriter(log_dir=str(self.run_dir)) as writer:
            writer.add_graph(model, example_input)

    def embeddings(self, views: list[tuple[torch.Tensor, int]], labels: list[str], images: torch.Tensor,
                   tag: str) -> None:
        """The Projector: each (points, step) with the points' labels and sprite images, through torch's public
        SummaryWriter (one writer for all, since each writes the projector's config for what it was given)."""
        with SummaryWriter(log_dir=str(self.run_dir)) as writer:
            for points, step in views:
                writer.add_embedding(points, metadata=labels, label_img=images, global_step=step, tag=tag)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
