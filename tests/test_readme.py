"""The README's code is run as written, so the documentation cannot drift from the API."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def containing(text: str) -> str:
    """The one python block holding `text`: found by its words, not by its place in the README."""
    (block,) = [b for b in blocks("python") if text in b]
    return block


def test_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(blocks("python")[0], namespace)
    log = namespace["log"]
    assert len(log) == 60 and torch.equal(log[4].activations["hidden"], log.activation("hidden")[4])
    assert (tmp_path / "snapshots.npz").is_file()


def test_run_record_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(containing("from nn_lesson.lesson.run.record import RunRecord"), namespace)
    record = namespace["record"]
    assert len(record.log) == 30 and (tmp_path / "run.npz").is_file()


def test_numpy_reader_runs(tmp_path, monkeypatch, lesson_run, capsys):
    run_dir = tmp_path / "runs" / "RUN"
    run_dir.mkdir(parents=True)
    lesson_run.log.save(run_dir / "snapshots.npz")
    monkeypatch.chdir(tmp_path)
    exec(containing("np.load("), {})
    assert f"{len(lesson_run.log)} steps; first loss" in capsys.readouterr().out


def test_quickstart_commands_are_what_ci_runs():
    commands = blocks("bash")
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].strip() in ci.splitlines()


def marked(first_line: str) -> str:
    """The python block that starts with this comment: found by its words, not by its place in the README."""
    (block,) = [b for b in blocks("python") if b.startswith(first_line)]
    return block


def test_your_own_model_examples_run(tmp_path, monkeypatch):
    import pytest
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(marked("# your own model: the plain loop"), namespace)
    assert len(namespace["rec"].log) == 4 and (tmp_path / "runs" / "my-convnet" / "snapshots.npz").is_file()
    pytest.importorskip("lightning", reason="pip install -e '.[test]' brings lightning")
    exec(marked("# your own model: inside PyTorch Lightning"), namespace)
    callback = namespace["callback"]
    assert len(callback.log) == 8 and callback.report().complete
    assert (tmp_path / "runs" / "my-lightning-run" / "snapshots.npz").is_file()


def test_streaming_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(containing("# streaming the log to disk"), {})
    assert capsys.readouterr().out.startswith("200 rows; loss at step 120 is")
    assert len(list((tmp_path / "runs" / "my-stream").glob("segment-*.npz"))) > 2
    assert (tmp_path / "runs" / "my-run" / "snapshots.npz").is_file()
