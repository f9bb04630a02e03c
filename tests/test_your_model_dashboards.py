"""write_tensorboard on a small ResNet: TensorBoard's own dashboards, read back by TensorBoard's own reader
(EventMultiplexer) from the files written. Histograms of every parameter, gradient, update and layer output named by
module path; the health scalars of every layer at every step; the Custom Scalars layout; one HParams row. Every
number compared with the SnapshotLog the Recorder kept."""

import pytest
import torch

from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata

from nn_lesson import SnapshotLog, write_tensorboard
from nn_lesson.hooks import CapturePolicy

from test_model_view import K, STEPS, train


def reader(runs, name):
    mux = event_multiplexer.EventMultiplexer(size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    mux.AddRunsFromDirectory(str(runs))
    mux.Reload()
    return mux.GetAccumulator(name)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    runs = tmp_path_factory.mktemp("dashboards") / "runs"
    rec = train(CapturePolicy.stats_and_every(K))
    write_tensorboard(rec.log, runs / "resnet", stats=rec.stats_log)
    only = train(CapturePolicy.stats())
    write_tensorboard(only.log, runs / "stats-only", hparams={"lr": 0.1, "net": "resnet"})
    return runs, rec.log, rec.stats_log, only.log


def test_histograms_of_every_parameter_gradient_update_and_output_by_module_path(written):
    runs, log, _, _ = written
    acc = reader(runs, "resnet")
    tags = set(acc.Tags()["histograms"])
    for p in log.param_names:
        module, _, leaf = p.rpartition(".")
        for what in ("", ".grad", ".update"):
            assert f"{module}/{leaf}{what}" in tags, (p, what)
    for layer in log.layers:
        assert {f"{layer}/output", f"{layer}/output.grad"} <= tags, layer
    # the numbers: a conv's weight gradient and a ReLU's output at every full row
    for tag, values in (("layers.0.conv1/weight.grad", log.param("layers.0.conv1.weight", "grad")),
                        ("layers.1.conv2/weight", log.param("layers.1.conv2.weight", "after")),
                        ("layers.2.relu1/output", log.values("act:layers.2.relu1")),
                        ("head/output.grad", log.values("act_grad:head"))):
        events = acc.Histograms(tag)
        assert [e.step for e in events] == log.step.tolist() == list(range(0, STEPS, K)), tag
        for e, row in zip(events, values):
            h, row = e.histogram_value, row.double().flatten()
            assert h.num == row.numel() and h.min == pytest.approx(float(row.min()))
            assert h.max == pytest.approx(float(row.max())) and sum(h.bucket) == row.numel()
            assert h.sum == pytest.approx(float(row.sum()), rel=1e-6, abs=1e-9)


def test_the_health_of_every_layer_at_every_step(written):
    runs, log, stats, _ = written
    acc = reader(runs, "resnet")
    for p in ("stem.0.weight", "layers.1.conv1.weight", "layers.2.bn2.weight", "head.bias"):
        norms = acc.Scalars(f"6 health/gradient norm {p}")
        assert [e.step for e in norms] == list(range(STEPS))         # every step, from the statistics
        assert [e.value for e in norms] == pytest.approx(stats.stat(f"{p}:grad", "norm").tolist(), rel=1e-6)
    ratios = acc.Scalars("6 health/update-to-weight ratio layers.1.conv1.weight")
    expected = stats.stat("layers.1.conv1.weight:update", "std") / stats.stat("layers.1.conv1.weight:value", "std")
    assert [e.value for e in ratios] == pytest.approx(expected.tolist(), rel=1e-6) and len(ratios) == STEPS
    # at a full row the statistics' ratio is the full numbers' (float32 statistics)
    w = log[1]
    full = (w.after["layers.1.conv1.weight"] - w.before["layers.1.conv1.weight"]).double().std(correction=0) \
        / w.before["layers.1.conv1.weight"].double().std(correction=0)
    assert ratios[K].value == pytest.approx(float(full), rel=1e-4)
    assert "6 health/update-to-weight ratio layers.2.bn2.weight" not in acc.Tags()["scalars"]   # 1-D: no ratio
    loss = acc.Scalars("1 loss/this step's batch")
    assert [e.value for e in loss] == pytest.approx(stats.loss.tolist())
    from tensorboard.plugins.custom_scalar import layout_pb2
    layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["gradient norm of every parameter"] == [r"^6\ health/gradient\ norm\ "]
    ratio_tags = [t for t in acc.Tags()["scalars"] if t.startswith("6 health/update-to-weight ratio ")]
    assert len(ratio_tags) == sum(len(log.slot(p).shape) >= 2 for p in log.param_names)


def test_one_hparams_row_by_default_and_as_given(written):
    runs, log, _, _ = written
    for run, want in (("resnet", {"lr": 0.1, "recorded steps": len(log)}),
                      ("stats-only", {"lr": 0.1, "net": "resnet"})):
        acc = reader(runs, run)
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = hparams_metadata.parse_session_start_info_plugin_data(content)
        got = {k: (v.number_value if v.HasField("number_value") else v.string_value) for k, v in start.hparams.items()}
        assert got == want, run
        assert len(acc.Scalars("hparams/final loss")) == 1


def test_a_statistics_only_run_has_histograms_at_every_step_from_its_statistics(written):
    runs, _, _, only = written
    acc = reader(runs, "stats-only")
    events = acc.Histograms("layers.0.conv1/weight.grad")
    assert [e.step for e in events] == list(range(STEPS))
    for e, row in zip(events, range(STEPS)):
        s = only[row].stats["layers.0.conv1.weight:grad"]
        h = e.histogram_value
        assert list(h.bucket) == pytest.approx(s["hist"].tolist()) and h.min == pytest.approx(s["min"])
    out = acc.Histograms("layers.1.relu2/output")
    assert len(out) == STEPS and out[3].histogram_value.max == pytest.approx(only[3].stats["act:layers.1.relu2"]["max"])
    assert len(acc.Scalars("6 health/gradient norm head.weight")) == STEPS
