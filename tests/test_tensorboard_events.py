"""What the lesson writes, read back with TensorBoard's own EventAccumulator."""

import re
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nn_lesson.lesson.board.hparams import SHOWN as HPARAMS_SHOWN
from nn_lesson.lesson.board.lesson_run import DIAGRAM_TAG, GRAPH_TAG, HPARAM_METRICS, TABLE_TAG
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
    assert tags["histograms"] == []                              # 4-12 numbers: per-step tables, not spikes
    assert len(events.Tensors(TABLE_TAG)) == steps               # ... one table per step
    assert len(events.Images(DIAGRAM_TAG)) == steps              # one diagram per step: the slider
    assert len(events.Images(GRAPH_TAG)) == 1                    # torchviz, rendered by dot
    assert tags["graph"] is True                                 # add_graph
    text = [t for t in tags["tensors"] if t.startswith("lesson/")]
    assert len(text) == 12 and text[0] == "lesson/01 the challenge"
    assert set(events.PluginTagToContent("hparams")) >= {"_hparams_/experiment", "_hparams_/session_start_info"}
    assert "custom_scalars__config__" in events.PluginTagToContent("custom_scalars")



def test_a_learners_sidebar_has_about_a_dozen_groups(events):
    """No scalar per weight or bias (there were 52): one line per parameter and group, and the groups of all
    dashboards together stay at about a dozen."""
    tags = events.Tags()
    every = tags["scalars"] + tags["images"] + tags["histograms"] + tags["tensors"]
    groups = {t.split("/", 1)[0] for t in every if not t.startswith(("_hparams_", "custom_scalars"))}
    assert groups == {"1 loss", "2 accuracy", "3 weights", "4 gradients", "5 updates", "6 health", "hparams",
                      "0 the network", "lesson", "tables"}
    assert len(tags["scalars"]) <= 30
    assert not [t for t in tags["scalars"] if "→" in t or "bias bias" in t or "[" in t]


def test_decision_maps_at_a_few_moments(events, log):
    from nn_lesson.lesson.board.decision_image import TAG
    per_epoch = int((log.epoch == 0).sum())
    assert [e.step for e in events.Images(TAG)] == [0, per_epoch - 1, len(log) // 2, len(log) - 1]


def test_scalar_values_are_the_snapshot_numbers(events, log, record):
    loss = [e.value for e in events.Scalars("1 loss/this step's students")]
    assert np.allclose(loss, log.loss.numpy(), rtol=1e-6)
    size = [e.value for e in events.Scalars("3 weights/size of hidden.weight")]
    assert np.allclose(size, log.param("hidden.weight", "after").flatten(1).norm(dim=1).numpy(), rtol=1e-6)
    grad = [e.value for e in events.Scalars("4 gradients/size of output.weight")]
    assert np.allclose(grad, log.param("output.weight", "grad").flatten(1).norm(dim=1).numpy(), rtol=1e-6)
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
    assert info.hparams["2 lr"].number_value == 0.5 and info.hparams["loss"].string_value == "ce"
    assert info.hparams["1 kind"].string_value == "lesson" and info.hparams["3 optimizer"].string_value == "sgd"
    assert info.hparams["init"].string_value == "lesson" and info.hparams["seed"].number_value == 0
    assert set(HPARAM_METRICS) <= set(events.Tags()["scalars"])


def test_hparams_show_the_knobs_first(events):
    """TensorBoard's HParams table ticks its first 5 hparams (differs first, then by name): ours are the run's
    kind, lr, optimizer, activation and 'loss, batch size' -- the knobs of lesson and bridge runs together."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    infos = plugin_data_pb2.HParamsPluginData.FromString(content).experiment.hparam_infos
    first = sorted(infos, key=lambda i: (not i.differs, i.name))[:5]
    assert [i.display_name for i in first] == HPARAMS_SHOWN == ["kind", "lr", "optimizer", "activation",
                                                                "loss, batch size"]
    assert all(i.differs for i in first) and not any(i.differs for i in infos if i not in first)


def test_step_tables_escape_markup(tmp_path):
    """A student named with markdown table syntax stays in its cell: every row of the rendered table has
    the same number of cells and the name shows as written."""
    import subprocess
    import sys
    from tensorboard.plugin_util import markdown_to_safe_html
    from nn_lesson.data.students import lesson_csv_path
    csv = tmp_path / "students.csv"
    csv.write_text(Path(lesson_csv_path()).read_text().replace("Sarah", '"Sa|rah <b>*x*</b>"', 1))
    result = subprocess.run([sys.executable, "-m", "nn_lesson", "--epochs", "1", "--name", "pipes", "--quiet",
                             "--data", str(csv), "--logdir", str(tmp_path / "runs")], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    acc = EventAccumulator(str(tmp_path / "runs" / "pipes"), size_guidance={"tensors": 0})
    acc.Reload()
    markdown = acc.Tensors(TABLE_TAG)[0].tensor_proto.string_val[0].decode()
    html = markdown_to_safe_html(markdown)
    student_table = html.split("</table>")[0]
    cells = [len(re.findall(r"<t[dh][ >]", row)) for row in student_table.split("<tr>")[1:]]
    assert cells == [3, 3], html[:600]
    import html as html_module
    first_cell = re.search(r"<td>(.*?)</td>", student_table).group(1)
    assert html_module.unescape(first_cell) == "Sa|rah <b>*x*</b>" and "<b>" not in student_table


def test_diagram_is_wide_and_on_one_scale(events, record, tmp_path):
    """Two runs from the same starting weights (lr 0.5 and lr 5, whose largest weights end 10x apart) draw step 0
    with the same line widths: measured on the pictures TensorBoard holds, not on a constant."""
    import io
    from PIL import Image, ImageChops
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.lesson_run import write_lesson_tensorboard
    from nn_lesson.lesson.run.settings import LessonConfig
    from nn_lesson.lesson.run.train import train
    images = events.Images(DIAGRAM_TAG)
    assert {(i.width, i.height) for i in images} == {(960, 560)}      # >= 800 px, every step
    assert [i.step for i in images][:2] == [0, 1]
    fast = train(LessonConfig(lr=5.0, epochs=2))
    assert float(fast.log.param("output.weight", "after").abs().max()) > 2 * float(record.log.param("output.weight", "after")[:12].abs().max())
    (tmp_path / "lr5").mkdir()
    with EventWriter(tmp_path / "lr5") as writer:
        write_lesson_tensorboard(writer, fast)
    other = EventAccumulator(str(tmp_path / "lr5"), size_guidance={"images": 0})
    other.Reload()
    pictures = [Image.open(io.BytesIO(acc.Images(DIAGRAM_TAG)[0].encoded_image_string)).convert("RGB")
                for acc in (events, other)]
    lines = (0, 60, 960, 560 - 45)  # below the title, above the legend: lines, nodes and node values
    difference = ImageChops.difference(*(p.crop(lines) for p in pictures))
    assert difference.getbbox() is None, "the same weights are drawn with different widths in two runs"


def test_custom_scalars_group_the_sizes(events):
    from tensorboard.plugins.custom_scalar import layout_pb2
    stored = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(stored)
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    sizes = [t for t in events.Tags()["scalars"] if re.search(charts["size of each parameter"][0], t)]
    assert sorted(sizes) == [f"3 weights/size of {n}" for n in ("hidden.bias", "hidden.weight", "output.bias", "output.weight")]
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
