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


def test_run_record_roundtrip_holds_the_data_name_and_hash_not_a_path(lesson_run, tmp_path):
    import hashlib
    from nn_lesson.data import lesson_csv_path
    from nn_lesson.lesson.run.record import RunRecord
    path = lesson_run.save(tmp_path / "run.npz")
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(f["header"].item())
    assert header["version"] == 3
    assert header["record"]["data"] == {"name": "students.csv",
                                        "sha256": hashlib.sha256(lesson_csv_path().read_bytes()).hexdigest()}
    assert str(lesson_csv_path().parent) not in f"{header}"  # no folder of this machine in the file
    loaded = RunRecord.load(path)
    assert loaded.config == lesson_run.config and loaded.names == lesson_run.names and loaded.stopped is None
    assert torch.equal(loaded.heldout.confidence_final, lesson_run.heldout.confidence_final)
    assert torch.equal(loaded.train.loss_by_step, lesson_run.train.loss_by_step)
    assert all(torch.equal(loaded.initial[n], lesson_run.initial[n]) for n in lesson_run.initial)
    assert torch.equal(loaded.epochs.heldout_loss, lesson_run.epochs.heldout_loss)
    assert SnapshotLog.load(path).param_names == lesson_run.log.param_names  # the log alone reads it too


def test_version_1_files_load_as_a_log_and_say_what_to_do_as_a_run(lesson_run, tmp_path):
    """A file as nn-lesson 0.1 wrote it (meta and extra:* inside the log) still loads as a SnapshotLog; as a
    run record it is a one-line error that says to re-run."""
    from nn_lesson.hooks.snapshot_file import write_snapshot_file
    from nn_lesson.lesson.run.record import RunRecord
    log = lesson_run.log
    path = write_snapshot_file(tmp_path / "v1.npz", {**log.header(), "meta": {"config": {}}},
                               {**log.arrays(), "extra:train_loss_by_step": lesson_run.train.loss_by_step})
    rewrite_version(path, 1)
    old = SnapshotLog.load(path)
    assert len(old) == len(log) and torch.equal(old.loss, log.loss)
    with pytest.raises(SnapshotFileError, match="version 1 .*re-run the lesson") as err:
        RunRecord.load(path)
    assert "\n" not in str(err.value)


def rewrite_version(path, version):
    """Rewrite the header's version (files as older releases wrote them)."""
    import zipfile
    with np.load(path, allow_pickle=False) as f:
        members = {name: f[name] for name in f.files}
    header = json.loads(members["header"].item())
    header["version"] = version
    members["header"] = np.array(json.dumps(header))
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in members.items():
            with zf.open(f"{name}.npy", "w") as out:
                np.lib.format.write_array(out, array, allow_pickle=False)


def test_a_bridge_file_is_refused_by_the_lesson_in_one_line(tmp_path):
    from nn_lesson.lesson.run.record import RunRecord, save_record
    log = SnapshotLog()
    path = save_record(tmp_path / "bridge.npz", log, {"kind": "bridge"}, {})
    with pytest.raises(SnapshotFileError, match="a bridge run, not a lesson run"):
        RunRecord.load(path)


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
