"""What the lesson writes, read back with TensorBoard's own EventAccumulator."""

import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nn_lesson.lesson.board.lesson_run import DIAGRAM_TAG, GRAPH_TAG, HPARAM_METRICS
from nn_lesson.lesson.run.record import RunRecord


@pytest.fixture(scope="module")
def events(written_run):
    run_dir, _ = written_run
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def record(written_run):
    return RunRecord.load(written_run[0] / "snapshots.npz")


@pytest.fixture(scope="module")
def log(record):
    return record.log


def test_every_dashboard_has_its_tags(events, log):
    tags = events.Tags()
    steps = len(log)
    assert len(events.Scalars("1 loss/this step's students")) == steps
    for name in log.param_names:
        assert len(events.Histograms(f"weights/{name}")) == steps
        assert len(events.Histograms(f"gradients/{name}")) == steps
    for layer in ("hidden", "hidden_act", "output"):
        assert len(events.Histograms(f"activations/{layer}")) == steps
    assert len(events.Images(DIAGRAM_TAG)) == steps              # one diagram per step: the slider
    assert len(events.Images(GRAPH_TAG)) == 1                    # torchviz, rendered by dot
    assert tags["graph"] is True                                 # add_graph
    text = [t for t in tags["tensors"] if t.startswith("lesson/")]
    assert len(text) == 12 and text[0] == "lesson/01 the challenge"
    assert set(events.PluginTagToContent("hparams")) >= {"_hparams_/experiment", "_hparams_/session_start_info"}
    assert "custom_scalars__config__" in events.PluginTagToContent("custom_scalars")
    weights = [t for t in tags["scalars"] if t.startswith("3 weights/")]
    grads = [t for t in tags["scalars"] if t.startswith("4 gradients/") and "bias" not in t]
    assert len(weights) == 20 and len(grads) == 20


def test_scalar_values_are_the_snapshot_numbers(events, log, record):
    loss = [e.value for e in events.Scalars("1 loss/this step's students")]
    assert np.allclose(loss, log.loss.numpy(), rtol=1e-6)
    studied_h3 = [e.value for e in events.Scalars("3 weights/studied→h3")]
    assert np.allclose(studied_h3, log.param("hidden.weight", "after")[:, 2, 0].numpy())
    h1_pass_grad = [e.value for e in events.Scalars("4 gradients/h1→PASS")]
    assert np.allclose(h1_pass_grad, log.param("output.weight", "grad")[:, 0, 0].numpy())
    epochs = record.epochs
    heldout = events.Scalars("1 loss/epoch: held-out students")
    assert [e.step for e in heldout] == list(range(1, len(epochs.epoch) + 1))
    assert np.allclose([e.value for e in heldout], epochs.heldout_loss.numpy())
    final = events.Scalars("hparams/final held-out accuracy")[-1].value
    assert final == pytest.approx(float(epochs.heldout_accuracy[-1]))


def test_hparams_name_the_run_settings(events):
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["lr"].number_value == 0.5 and info.hparams["loss"].string_value == "ce"
    assert set(HPARAM_METRICS) <= set(events.Tags()["scalars"])


def test_custom_scalars_group_weights_into_pass(events):
    from tensorboard.plugins.custom_scalar import layout_pb2
    stored = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(stored)
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    into_pass = [t for t in events.Tags()["scalars"] if re.search(charts["weights into PASS"][0], t)]
    assert sorted(into_pass) == [f"3 weights/h{j}→PASS" for j in range(1, 5)]
    assert "loss vs held-out loss (per epoch)" in charts


def test_event_framing_equals_tensorboards_own(tmp_path):
    """Our record framing: the checksum equals TensorBoard's own masked CRC-32C byte for byte, and a file
    written by EventWriter reads back through TensorBoard's own record reader, event by event."""
    import os
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference
    from nn_lesson.lesson.board.events import EventWriter, masked_crc32c
    for data in (b"", b"a", os.urandom(1000), os.urandom(65537)):
        assert masked_crc32c(data) == reference(data)
    with EventWriter(tmp_path) as events:
        for step in range(3):
            events.step(step, {"a/b": step * 0.5})
        events.text("page", "| x |")
    (path,) = tmp_path.glob("events.out.tfevents.*")
    read = [Event.FromString(record) for record in RawEventFileLoader(str(path)).Load()]
    assert read[0].file_version == "brain.Event:2"
    assert [(e.step, e.summary.value[0].simple_value) for e in read[1:4]] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert read[4].summary.value[0].tag == "page" and len(read) == 5
