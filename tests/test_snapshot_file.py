import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from nn_lesson.hooks import SnapshotFileError, SnapshotLog


def test_save_load_roundtrip(lesson_run, tmp_path):
    path = lesson_run.log.save(tmp_path / "s.npz")
    loaded = SnapshotLog.load(path)
    assert len(loaded) == len(lesson_run.log) and loaded.param_names == lesson_run.log.param_names
    for name in lesson_run.log.columns:
        assert torch.equal(loaded.values(name).nan_to_num(-9), lesson_run.log.values(name).nan_to_num(-9)), name
    a, b = loaded[7], lesson_run.log[7]
    assert torch.equal(a.grads["hidden.weight"], b.grads["hidden.weight"]) and a.loss == b.loss
    assert torch.equal(loaded.extras["heldout_confidence_final"], lesson_run.log.extras["heldout_confidence_final"])


def test_file_reads_with_numpy_alone(lesson_run, tmp_path):
    path = lesson_run.log.save(tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as f:  # the README's five-line script
        header = json.loads(f["header"].item())
        loss, grads = f["loss"], f["param_grad"]
        slot = next(p for p in header["params"] if p["name"] == "output.weight")
        w_grad = grads[:, slot["offset"]: slot["offset"] + 8].reshape(-1, *slot["shape"])
    assert header["format"] == "nn-lesson-snapshots" and header["steps"] == len(lesson_run.log)
    assert np.array_equal(loss, lesson_run.log.loss.numpy())
    assert np.array_equal(w_grad, lesson_run.log.param("output.weight", "grad").numpy())


def test_same_seed_and_arguments_give_identical_files(tmp_path):
    for name in ("a", "b"):
        result = run_cli("--epochs", "5", "--name", name, "--logdir", str(tmp_path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "a/snapshots.npz").read_bytes() == (tmp_path / "b/snapshots.npz").read_bytes()


def test_truncated_file_is_a_clear_error(lesson_run, tmp_path):
    path = lesson_run.log.save(tmp_path / "s.npz")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(SnapshotFileError, match="truncated or corrupt"):
        SnapshotLog.load(path)
