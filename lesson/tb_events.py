"""Thin helpers over torch's SummaryWriter: one event per step holding all of that step's scalars and
histograms (far cheaper than one add_scalar call per number, see the README's Performance section)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import histogram, text

# TensorBoard's own default bucket list has ~1500 edges: at lesson scale that is megabytes of mostly
# empty buckets per run. 30 even buckets over each tensor's range show the shape just as well.
HISTOGRAM_BINS = 30


def png_image(png: bytes) -> Summary.Image:
    """TensorBoard's image record for already-encoded PNG bytes (size read from the PNG header)."""
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)


def use_fast_checksums() -> bool:
    """TensorBoard's event writer checksums each record with a pure-Python CRC-32C when TensorFlow is not
    installed: about 80 ms per MB, most of the time spent writing a lesson's diagrams. google-crc32c
    computes the same masked CRC in C; point the writer at it when its C implementation is present."""
    try:
        import google_crc32c
    except ImportError:
        return False
    if google_crc32c.implementation != "c":
        return False
    from tensorboard.summary.writer import record_writer

    def masked_crc32c(data: bytes) -> int:
        x = google_crc32c.value(bytes(data))
        return (((x >> 15) | (x << 17)) + 0xA282EAD8) & 0xFFFFFFFF  # TFRecord's masking, as in tensorboard

    record_writer.masked_crc32c = masked_crc32c
    return True


class EventWriter:
    def __init__(self, run_dir: Path):
        use_fast_checksums()
        self.writer = SummaryWriter(log_dir=str(run_dir), max_queue=10_000, flush_secs=3600)
        self._file = self.writer._get_file_writer()

    def step(self, step: int, scalars: dict[str, float] | None = None,
             histograms: dict[str, np.ndarray | HistogramProto] | None = None,
             images: dict[str, bytes] | None = None) -> None:
        """Write one event at `step` holding every given scalar, histogram (values or a ready proto) and PNG."""
        values = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in (scalars or {}).items()]
        values += [Summary.Value(tag=tag, image=png_image(png)) for tag, png in (images or {}).items()]
        for tag, data in (histograms or {}).items():
            if isinstance(data, HistogramProto):
                values.append(Summary.Value(tag=tag, histo=data))
            elif data.size:
                values.extend(histogram(tag, data, bins=HISTOGRAM_BINS).value)
        if values:
            self._file.add_summary(Summary(value=values), global_step=step)

    def series(self, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
        for s, v in zip(steps.tolist(), values.tolist()):
            self._file.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=v)]), global_step=s)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """Markdown for the Text dashboard under exactly `tag` (add_text would append '/text_summary')."""
        summary = text(tag, markdown)
        summary.value[0].tag = tag
        self.add(summary, step)

    def add(self, summary: Summary, step: int = 0) -> None:
        self._file.add_summary(summary, global_step=step)

    def close(self) -> None:
        self.writer.close()
