"""Bad input, bad arguments, divergence, interruption, overwrite protection and corrupt snapshot files."""

import json
import re
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import no_hooks_left, run_cli
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.hooks import Recorder, SnapshotFileError, SnapshotLog
from nn_lesson.lesson.cli import main
from nn_lesson.models import StudentNet

BAD = Path(__file__).with_name("bad_csv")
CORPUS = [  # file, row, column (None where the problem has none), words the message must hold
    ("missing_column.csv", 1, "previous_score", "missing column"),
    ("extra_column.csv", 1, "shoe_size", "unknown column"),
    ("duplicate_header.csv", 1, "hours_studied", "duplicate column"),
    ("text_in_number.csv", 3, "hours_studied", "'five' is not a number"),
    ("empty_cell.csv", 3, "hours_slept", "empty cell"),
    ("nan_score.csv", 3, "previous_score", "not a finite number"),
    ("inf_hours.csv", 3, "hours_studied", "not a finite number"),
    ("negative_hours.csv", 3, "hours_studied", "outside 0..24"),
    ("hours_over_24.csv", 3, "hours_slept", "outside 0..24"),
    ("score_over_100.csv", 3, "previous_score", "outside 0..100"),
    ("unknown_label.csv", 3, "label", "unknown label 'MAYBE'"),
    ("empty_file.csv", None, None, "the file is empty"),
    ("header_only.csv", None, None, "no students"),
    ("not_utf8.csv", 3, "name", "not UTF-8"),
    ("binary.csv", None, None, "binary file"),
    ("short_row.csv", 3, None, "has 4 cells"),
    ("all_heldout.csv", None, None, "every student is held out"),
    ("one_class.csv", None, None, "every training student is PASS"),
    ("unknown_split.csv", 2, "split", "unknown split"),
]


def run_main(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name, row, column, words", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_csv(capsys, tmp_path, name, row, column, words):
    code, _, err = run_main(capsys, "--data", str(BAD / name), "--logdir", str(tmp_path / "runs"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(BAD / name) in lines[0] and words in lines[0]
    if row is not None:
        assert f"row {row}" in lines[0]
    if column is not None:
        assert f"column '{column}'" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path, words", [(BAD, "is a directory"), (BAD / "no_such.csv", "no such file")])
def test_not_a_file(capsys, tmp_path, path, words):
    code, _, err = run_main(capsys, "--data", str(path), "--logdir", str(tmp_path / "runs"))
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_million_rows_is_refused_clearly(capsys, tmp_path):
    big = tmp_path / "big.csv"
    row = "Ana,5,7,70,PASS\n"
    big.write_text("name,hours_studied,hours_slept,previous_score,label\n" + row * 1_000_000)
    code, _, err = run_main(capsys, "--data", str(big), "--logdir", str(tmp_path / "runs"))
    assert code == 2 and "more than 10000 students" in err and "row 10002" in err and "bridge" in err
    assert not (tmp_path / "runs").exists()


def test_labels_are_case_insensitive_and_1_0_is_accepted(tmp_path):
    from nn_lesson.data import load_students
    path = tmp_path / "ok.csv"
    path.write_text("name,hours_studied,hours_slept,previous_score,label\nA,5,7,70,pass\nB,2,5,50,Fail\n"
                    "C,8,8,90,1\nD,1,4,40,0\n")
    assert load_students(path).labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("args, words", [
    (["--lr", "0"], "--lr"), (["--lr", "-1"], "--lr"), (["--lr", "abc"], "not a number"),
    (["--lr", "nan"], "--lr"), (["--epochs", "0"], "--epochs"), (["--batch-size", "7"], "larger than the 6"),
    (["--loss", "hinge"], "invalid choice"), (["--activation", "gelu"], "invalid choice"),
])
def test_bad_arguments(capsys, tmp_path, args, words):
    code, _, err = run_main(capsys, *args, "--logdir", str(tmp_path / "runs"))
    assert code == 2 and words in err and err.startswith("usage:")
    assert not (tmp_path / "runs").exists()


def test_unwritable_logdir(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_main(capsys, "--logdir", str(blocker / "runs"))
    assert code == 2 and "is not a directory" in err
    assert blocker.read_text() == "not a folder"


def test_divergence_stops_names_step_and_layer_and_keeps_the_run(tmp_path):
    result = run_cli("--lr", "1e30", "--activation", "relu", "--epochs", "5", "--name", "boom", "--quiet",
                     "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 3
    message = [line for line in result.stderr.splitlines() if "diverged" in line][0]
    assert "at step 2" in message and "layer 'output'" in message and "Try a smaller --lr" in message
    record = RunRecord.load(tmp_path / "runs/boom/snapshots.npz")
    assert len(record.log) == 2 and record.stopped.startswith("diverged")
    acc = EventAccumulator(str(tmp_path / "runs/boom"))
    acc.Reload()
    assert len(acc.Scalars("1 loss/this step's students")) == 2


def test_ctrl_c_keeps_what_was_captured(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nn_lesson", "--epochs", "30000", "--name", "stopped",
                             "--logdir", str(tmp_path / "runs")], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("training on 6 students")
    assert proc.stdout.readline().startswith("epoch    1/")  # steps are being recorded: interrupt now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT after" in err
    record = RunRecord.load(tmp_path / "runs/stopped/snapshots.npz")
    log = record.log
    assert len(log) > 0 and record.stopped == "interrupted"
    acc = EventAccumulator(str(tmp_path / "runs/stopped"), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("1 loss/this step's students")) == len(log)


def test_an_existing_run_is_never_overwritten_unless_asked(capsys, tmp_path):
    logdir = str(tmp_path / "runs")
    assert run_main(capsys, "--epochs", "2", "--quiet", "--name", "mine", "--logdir", logdir)[0] == 0
    first = (tmp_path / "runs/mine/snapshots.npz").read_bytes()
    code, _, err = run_main(capsys, "--epochs", "3", "--quiet", "--name", "mine", "--logdir", logdir)
    assert code == 2 and "already exists" in err
    assert (tmp_path / "runs/mine/snapshots.npz").read_bytes() == first
    assert run_main(capsys, "--epochs", "3", "--quiet", "--name", "mine", "--overwrite", "--logdir", logdir)[0] == 0
    assert len(SnapshotLog.load(tmp_path / "runs/mine/snapshots.npz")) == 18
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mine"]  # no leftovers


def test_unnamed_runs_get_new_folders(capsys, tmp_path):
    for _ in range(2):
        assert run_main(capsys, "--epochs", "1", "--quiet", "--logdir", str(tmp_path / "runs"))[0] == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_a_failed_write_leaves_no_half_run_and_keeps_the_snapshots(capsys, tmp_path, monkeypatch):
    import nn_lesson.lesson.board.lesson_run

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(nn_lesson.lesson.board.lesson_run, "write_lesson_tensorboard", crash)
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the kept snapshots go
    code, _, err = run_main(capsys, "--epochs", "1", "--quiet", "--name", "half", "--logdir", str(tmp_path / "runs"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left on device" in err
    kept = Path(re.search(r"saved to (\S+snapshots\.npz)", err).group(1))
    assert len(RunRecord.load(kept).log) == 6
    assert not (tmp_path / "runs/half").exists()
    assert list((tmp_path / ".runs.nn-lesson-staging").iterdir()) == []  # the claim is given back


def test_snapshot_save_is_atomic(lesson_run, tmp_path, monkeypatch):
    path = lesson_run.log.save(tmp_path / "s.npz")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError):
        lesson_run.log.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_corrupt_and_foreign_snapshot_files(lesson_run, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(SnapshotFileError, match="truncated or corrupt"):
        SnapshotLog.load(garbage)
    with pytest.raises(SnapshotFileError, match="no such snapshot file"):
        SnapshotLog.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(SnapshotFileError, match="no header"):
        SnapshotLog.load(tmp_path / "other.npz")


def test_wrong_version_is_named(lesson_run, tmp_path):
    path = lesson_run.log.save(tmp_path / "s.npz")
    newer = tmp_path / "newer.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "header.npy":
                header = json.loads(np.load(path)["header"].item())
                header["version"] = 99
                import io
                buf = io.BytesIO()
                np.save(buf, np.array(json.dumps(header)))
                data = buf.getvalue()
            dst.writestr(item, data)
    with pytest.raises(SnapshotFileError, match="version 99"):
        SnapshotLog.load(newer)


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['NN_LESSON_PWNED'])}",))


def test_loading_never_runs_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("NN_LESSON_PWNED", str(marker))
    evil = tmp_path / "evil.npz"
    np.savez(evil, header=np.array(json.dumps({"format": "nn-lesson-snapshots", "version": 1, "steps": 1})),
             loss=np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(SnapshotFileError):
        SnapshotLog.load(evil)
    assert not marker.exists()


def test_a_second_recorder_on_the_same_model_is_refused():
    model = StudentNet.from_lesson()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt):
        with pytest.raises(RuntimeError, match="already has an active Recorder"):
            with Recorder(model, opt):
                pass
    assert no_hooks_left(model, opt)
    with Recorder(model, opt) as rec:  # and a new one works after the first is gone
        model(torch.zeros(1, 3)).sum().backward()
        opt.step()
    assert len(rec.log) == 1


def test_eval_and_no_grad_record_forward_values_only():
    model = StudentNet.from_lesson().eval()
    x = torch.randn(5, 3)
    with torch.no_grad(), Recorder(model) as rec:
        out = model(x)
        model(x[:2])
    assert len(rec.log) == 2
    assert torch.equal(rec.log[0].outputs, out) and rec.log[1].inputs.shape == (2, 3)
    assert rec.log[0].grads == {} and rec.log[0].act_grads == {}
    assert no_hooks_left(model)


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "foo"])
def test_a_device_this_lesson_does_not_train_on_is_one_line_exit_2(capsys, tmp_path, device):
    from nn_lesson.lesson.cli import main
    with pytest.raises(SystemExit) as stop:
        main(["bridge", "--device", device, "--epochs", "1", "--logdir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --device" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
