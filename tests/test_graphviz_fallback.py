"""The torchviz graph: a PNG when Graphviz's dot is there; DOT text, one warning and exit 0 when it is not."""

import os
import sys
import subprocess

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import need_program
from nn_lesson.lesson.board.lesson_run import GRAPH_TAG


def test_png_when_dot_is_present(written_run):
    need_program("dot")
    acc = EventAccumulator(str(written_run[0]), size_guidance={"images": 0})
    acc.Reload()
    image = acc.Images(GRAPH_TAG)[0]
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and image.width > 100


def test_dot_text_and_a_warning_when_dot_is_missing(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}  # no dot anywhere on PATH
    result = subprocess.run([sys.executable, "-m", "nn_lesson", "--epochs", "2", "--name", "nodot", "--quiet",
                             "--logdir", str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "Graphviz" in warnings[0]
    acc = EventAccumulator(str(tmp_path / "runs" / "nodot"), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    assert GRAPH_TAG not in acc.Tags()["images"]
    source = acc.Tensors(f"{GRAPH_TAG} (DOT source)")[0].tensor_proto.string_val[0].decode()
    assert "digraph" in source and "AddmmBackward0" in source
