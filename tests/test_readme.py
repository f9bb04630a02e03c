"""The README's code is run as written, so the documentation cannot drift from the API."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


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
    exec(blocks("python")[1], namespace)
    record = namespace["record"]
    assert len(record.log) == 30 and (tmp_path / "run.npz").is_file()


def test_numpy_reader_runs(tmp_path, monkeypatch, lesson_run, capsys):
    run_dir = tmp_path / "runs" / "RUN"
    run_dir.mkdir(parents=True)
    lesson_run.log.save(run_dir / "snapshots.npz")
    monkeypatch.chdir(tmp_path)
    exec(blocks("python")[2], {})
    assert f"{len(lesson_run.log)} steps; first loss" in capsys.readouterr().out


def test_quickstart_commands_are_what_ci_runs():
    commands = blocks("bash")
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1].strip() in ci.splitlines()
