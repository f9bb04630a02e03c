"""The package installs under one import name and never shadows a user's own modules."""

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_only_nn_lesson_at_the_top(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("nn_lesson-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"nn_lesson"}
    for sub in ("data", "models", "hooks", "lesson", "lesson/run", "lesson/story", "lesson/board", "lesson/bridge",
                "lesson/commands"):
        assert f"nn_lesson/{sub}/__init__.py" in names
    assert "nn_lesson/data/students.csv" in names and "nn_lesson/__main__.py" in names
    assert not any(n.startswith(("nn_lesson/tests", "nn_lesson/benchmarks")) for n in names)


def test_a_users_own_models_hooks_and_data_stay_theirs(tmp_path):
    """A script beside its own models.py, hooks.py and data/ package imports nn_lesson, records a step,
    and still gets its own modules."""
    (tmp_path / "models.py").write_text("WHO = 'user models'\n")
    (tmp_path / "hooks.py").write_text("WHO = 'user hooks'\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("WHO = 'user data'\n")
    (tmp_path / "script.py").write_text(textwrap.dedent("""
        import torch
        from nn_lesson import Recorder, StudentNet, load_students
        import data, hooks, models
        model = StudentNet.from_lesson()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        students = load_students().training()
        with Recorder(model, opt) as rec:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(students.features[:1]), students.labels[:1]).backward()
            opt.step()
        print(len(rec.log), data.WHO, hooks.WHO, models.WHO)
    """))
    result = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "user", "data", "user", "hooks", "user", "models"]


def test_python_dash_m_runs_from_a_folder_with_a_data_package(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("raise ImportError('the user data package was imported')\n")
    result = subprocess.run([sys.executable, "-m", "nn_lesson", "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nn-lesson")


def test_hooks_and_models_import_no_other_part_of_the_package():
    """Data flows one way: hooks/ and models/ are torch-level; nothing in them imports the lesson or the data."""
    import ast
    root = Path(__file__).resolve().parents[1]
    for folder in ("hooks", "models"):
        for path in sorted((root / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    assert not name.startswith(("nn_lesson.lesson", "nn_lesson.data")), f"{path.name} imports {name}"


def test_the_recording_callback_points_to_the_writing_one_for_run_dir():
    pytest.importorskip("lightning")
    from nn_lesson.hooks.lightning import RecorderCallback
    with pytest.raises(TypeError, match="run_dir= and hparams= are TensorBoardRecorderCallback's"):
        RecorderCallback(run_dir="runs/x")
