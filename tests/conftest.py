import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nn_lesson.data import Standardizer, load_students
from nn_lesson.lesson.run.settings import LessonConfig
from nn_lesson.lesson.run.train import train


@pytest.fixture(scope="session")
def lesson_run():
    """The default lesson, trained once for the tests that only read it."""
    return train(LessonConfig())


@pytest.fixture(scope="session")
def students():
    return load_students()


@pytest.fixture
def scaled(students):
    training = students.training()
    return Standardizer.fit(training.features)(training.features), training.labels


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "nn_lesson", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def no_hooks_left(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> bool:
    """No hook of any kind and no forward wrapped on an instance (none of the tests' models sets its own)."""
    for m in model.modules():
        if "forward" in m.__dict__:
            return False
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(m, attr):
                return False
    for p in model.parameters():
        if getattr(p, "_post_accumulate_grad_hooks", None):
            return False
    if optimizer is not None and (optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks):
        return False
    return True


@pytest.fixture(scope="session")
def written_run(tmp_path_factory):
    """The default lesson written by the real CLI once: (run folder, stdout)."""
    root = tmp_path_factory.mktemp("lesson")
    result = run_cli("--name", "first-lesson", "--logdir", str(root / "runs"), cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "runs" / "first-lesson", result.stdout


def need_program(name: str) -> str:
    """Path of a system program a marked test needs: skipped locally when absent, a failure under CI."""
    import os
    import shutil
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


# The runs that the teaching and story tests read: each claim is true on some of them and false on others.
TEACHING_MATRIX = {
    "default": {},
    "lr 0.001": {"lr": 0.001},
    "lr 5": {"lr": 5.0},
    "lr 50": {"lr": 50.0},
    "lr 1e30 relu": {"lr": 1e30, "activation": "relu"},
    "relu random seed 7": {"activation": "relu", "init": "random", "seed": 7},
    "tanh": {"activation": "tanh"},
    "mse": {"loss": "mse"},
    "batch 3": {"batch_size": 3},
}


@pytest.fixture(scope="session")
def teaching_runs():
    """name -> (record, {title: Page}) for every run of TEACHING_MATRIX, trained once per session."""
    from nn_lesson.lesson.run.train import Diverged
    from nn_lesson.lesson.story.pages import lesson_pages
    out = {}
    for name, settings in TEACHING_MATRIX.items():
        try:
            record = train(LessonConfig(**settings))
        except Diverged as err:
            record = err.record
        out[name] = (record, {p.title: p for p in lesson_pages(record)})
    return out


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 720):
    """A page of Debian's headless chromium at width x height (playwright drives it), closed after the block."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings playwright")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=need_program("chromium"),
                                     args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            yield chromium.new_context(viewport={"width": width, "height": height}).new_page()
        finally:
            chromium.close()
