"""Hostile input and interruption, tried the way users and attackers would: racing processes, real signals at
several moments, hostile snapshot files built here, out-of-range arguments, markup in names, broken CSVs."""

from __future__ import annotations

import json
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli
from nn_lesson.hooks import SnapshotFileError, SnapshotLog
from nn_lesson.lesson.run.record import RunRecord

HEADER = "name,hours_studied,hours_slept,previous_score,label,split\n"


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nn_lesson", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(stream, pattern: str, timeout: float = 120) -> str:
    """The first line of `stream` matching `pattern`, waiting at most `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
            line = stream.readline()
            if not line:
                break
            if re.search(pattern, line):
                return line
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s")


def no_traceback(*texts: str) -> bool:
    return not any("Traceback" in t for t in texts)


# ---- 1. no run is lost: racing processes ----

def test_two_runs_racing_for_one_name_never_lose_a_finished_run(tmp_path):
    """Both orders of the race, forced by waiting on the first run's own output rather than left to the clock:
    a second run started while the first holds the name is refused, and one started after it published too."""
    logdir = str(tmp_path / "runs")
    first = start("--epochs", "30000", "--name", "same", "--logdir", logdir, cwd=tmp_path)
    wait_for_line(first.stdout, r"^epoch +1/")          # the name is claimed: training has begun
    while_writing = run_cli("--epochs", "40", "--quiet", "--name", "same", "--logdir", logdir, cwd=tmp_path)
    first.send_signal(signal.SIGINT)                     # the first run ends complete, marked as stopped
    out, err = first.communicate(timeout=180)
    assert first.returncode == 130, err
    steps = len(RunRecord.load(tmp_path / "runs/same/snapshots.npz").log)
    after = run_cli("--epochs", "40", "--quiet", "--name", "same", "--logdir", logdir, cwd=tmp_path)
    assert while_writing.returncode == 2 and "same" in while_writing.stderr, while_writing.stderr
    assert "being written by another" in while_writing.stderr, while_writing.stderr
    assert after.returncode == 2 and "already exists" in after.stderr, after.stderr
    assert steps >= 6 and len(RunRecord.load(tmp_path / "runs/same/snapshots.npz").log) == steps   # nothing lost
    assert no_traceback(out, err, while_writing.stderr, after.stderr)


def test_unnamed_runs_started_together_get_their_own_folders(tmp_path):
    logdir = str(tmp_path / "runs")
    procs = [start("--epochs", "5", "--quiet", "--logdir", logdir, cwd=tmp_path) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 3 and all((r / "snapshots.npz").is_file() for r in runs)
    assert not list((tmp_path / ".runs.nn-lesson-staging").iterdir())


def test_leftovers_of_a_killed_run_are_invisible_to_tensorboard_and_cleaned_by_the_next(tmp_path):
    logdir = tmp_path / "runs"
    proc = start("--epochs", "30000", "--name", "killed", "--logdir", str(logdir), cwd=tmp_path)
    staging = tmp_path / ".runs.nn-lesson-staging" / "killed"
    wait_for_line(proc.stdout, r"^epoch +1/")  # training has begun, so the name is claimed in the staging area
    proc.kill()  # SIGKILL: nothing can be saved, but nothing may be left where TensorBoard looks
    proc.wait(timeout=30)
    assert staging.exists() and not (logdir / "killed").exists()
    assert run_cli("--epochs", "1", "--quiet", "--name", "next", "--logdir", str(logdir), cwd=tmp_path).returncode == 0
    assert not staging.exists()  # the next run removed it: its owner process is gone
    assert sorted(p.name for p in logdir.iterdir()) == ["next"]


def test_a_run_killed_while_claiming_its_name_leaves_nothing_the_next_run_keeps(tmp_path):
    """A name appears in the staging area only with its owner file (a private folder renamed onto it); a
    process killed while preparing that folder leaves `.claiming-<pid>-…`, which the next run removes."""
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that is no longer running
    area = tmp_path / ".runs.nn-lesson-staging"
    half = area / f".claiming-{dead.pid}-0badc0de"
    half.mkdir(parents=True)  # killed after its mkdir, before its owner file
    assert run_cli("--epochs", "1", "--quiet", "--name", "next", "--logdir", str(tmp_path / "runs"),
                   cwd=tmp_path).returncode == 0
    assert not half.exists() and sorted(p.name for p in area.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["next"]


# ---- 4. stopping: real signals at several moments ----

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_keeps_a_complete_stopped_run(tmp_path, sig, code):
    proc = start("--epochs", "30000", "--name", "stopped", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    wait_for_line(proc.stdout, r"^epoch +1/")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == code, err
    assert no_traceback(out, err) and f"stopped by {signal.Signals(sig).name}" in err
    record = RunRecord.load(tmp_path / "runs/stopped/snapshots.npz")
    assert len(record.log) >= 6 and record.stopped == "interrupted"
    acc = EventAccumulator(str(tmp_path / "runs/stopped"), size_guidance={"scalars": 0})
    acc.Reload()
    assert len(acc.Scalars("1 loss/this step's students")) == len(record.log)


def test_a_signal_while_writing_lets_the_write_finish(tmp_path):
    proc = start("--epochs", "30000", "--name", "w", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    wait_for_line(proc.stdout, r"^epoch +1/")
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc.stderr, r"writing what was captured")
    proc.send_signal(signal.SIGTERM)  # now, while the run is being written
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert no_traceback(out, err)
    assert len(RunRecord.load(tmp_path / "runs/w/snapshots.npz").log) > 0
    assert not list((tmp_path / ".runs.nn-lesson-staging").iterdir())


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_at_start_writes_nothing(tmp_path, sig, code):
    proc = start("--epochs", "5", "--name", "early", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    proc.send_signal(sig)  # at once: Python is still starting, long before anything is claimed
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (code, -sig), err  # a signal before Python's handlers exist ends it the plain way
    assert no_traceback(out, err)
    assert not (tmp_path / "runs/early").exists()


def test_sigterm_under_serve_stops_our_tensorboard_too(tmp_path):
    proc = start("--epochs", "2", "--quiet", "--serve", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    printed = wait_for_line(proc.stdout, r"^TensorBoard: ").split()[1]
    assert printed.split("#")[1].startswith("lesson&token=")   # the Lesson tab, with the "+ run" token
    url = printed.split("#")[0]
    with urllib.request.urlopen(url + "data/runs", timeout=30) as r:
        assert r.status == 200
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and no_traceback(out, err)
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "data/runs", timeout=5)


def test_serve_shows_the_runs_that_exist_and_trains_nothing(tmp_path, written_run):
    """`nn-lesson serve`: TensorBoard on the runs already there (the README's class order no longer piles up
    identical runs); no run folder is added; SIGTERM stops our TensorBoard too; no runs is one line, exit 2."""
    import shutil
    runs = tmp_path / "runs"
    shutil.copytree(written_run[0], runs / "first-lesson")
    proc = start("serve", "--logdir", str(runs), cwd=tmp_path)
    printed = wait_for_line(proc.stdout, r"^TensorBoard: ").split()[1]
    url = printed.split("#")[0]
    with urllib.request.urlopen(url + "data/plugin/lesson/runs", timeout=30) as r:
        listed = json.loads(r.read())
    assert "first-lesson" in json.dumps(listed)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and no_traceback(out, err)
    assert sorted(p.name for p in runs.iterdir()) == ["first-lesson"]     # nothing trained, nothing written
    empty = run_cli("serve", "--logdir", str(tmp_path / "nothing-here"), cwd=tmp_path)
    assert empty.returncode == 2 and len(empty.stderr.strip().splitlines()[-1:]) == 1
    assert "is not a folder of runs" in empty.stderr and not (tmp_path / "nothing-here").exists()


def test_a_write_that_fails_midway_keeps_the_snapshots_and_says_where(tmp_path):
    """A real write failure: the process may write at most 1 MB per file (RLIMIT_FSIZE), so the 8 MB event
    file fails while the snapshot file (under 1 MB) still fits elsewhere."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 20, 2 ** 20))
    result = subprocess.run([sys.executable, "-m", "nn_lesson", "--quiet", "--name", "big", "--logdir",
                             str(tmp_path / "runs")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            preexec_fn=limit, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 1 and no_traceback(result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "File too large" in result.stderr
    kept = Path(re.search(r"saved to (\S+)", result.stderr).group(1))
    assert len(RunRecord.load(kept).log) == 360
    assert not (tmp_path / "runs/big").exists()


# ---- 2. memory: the largest data the README states ----

@pytest.mark.slow
def test_the_largest_class_trains_in_bounded_memory(tmp_path):
    """10,000 students (the stated maximum), one epoch: peak memory of the whole process measured."""
    lines = [HEADER]
    rng = np.random.default_rng(0)
    for i in range(10_000):
        studied, slept = rng.uniform(0, 10), rng.uniform(4, 9)
        score = float(np.clip(40 + 6 * studied + rng.normal(0, 8), 0, 100))
        passed = 0.9 * (studied - 5) + 0.4 * (slept - 6.5) + 0.08 * (score - 70) + rng.normal() > 0
        lines.append(f"s{i},{studied:.1f},{slept:.1f},{score:.1f},{'PASS' if passed else 'FAIL'},"
                     f"{'heldout' if rng.random() < 0.25 else 'train'}\n")
    (tmp_path / "big.csv").write_text("".join(lines))
    result = run_cli("--data", "big.csv", "--epochs", "1", "--quiet", "--name", "big", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory, 10,000 students, 1 epoch: {peak_mb:.0f} MB")
    assert peak_mb < 1500
    assert len(RunRecord.load(tmp_path / "runs/big/snapshots.npz").train.loss_by_step) > 7000


# ---- 3. hostile snapshot files ----

def npy_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(zipfile.ZipInfo(f"{name}.npy"), "w") as out:
        np.lib.format.write_array(out, array, allow_pickle=False)


def snapshot(tmp_path: Path, header: object, members: dict[str, np.ndarray] | None = None) -> Path:
    path = tmp_path / "hostile.npz"
    with zipfile.ZipFile(path, "w") as zf:
        npy_member(zf, "header", np.array(header if isinstance(header, str) else json.dumps(header)))
        for name, array in (members or {}).items():
            npy_member(zf, name, array)
    return path


GOOD = {"format": "nn-lesson-snapshots", "version": 2, "steps": 2, "layers": [], "stat_bins": 0,
        "params": [{"name": "w", "shape": [2], "offset": 0}]}


def hostile_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    bomb = tmp_path / "bomb.npz"  # 1 GB of zeros declared honestly, deflated to about 1 MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        npy_member(zf, "header", np.array(json.dumps(GOOD)))
        info = zipfile.ZipInfo("loss.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            np.lib.format.write_array_header_2_0(out, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 28,)})
            block = bytes(2 ** 24)
            for _ in range(2 ** 30 // 2 ** 24):
                out.write(block)
    files["inflating member"] = bomb
    files["huge declared shape"] = snapshot(tmp_path / "a", GOOD, {"loss": np.zeros(2, np.float32)})
    _claim_shape(files["huge declared shape"], "loss", (10 ** 12,))
    files["negative offset"] = snapshot(tmp_path / "b", {**GOOD, "params": [{"name": "w", "shape": [2], "offset": -4}]},
                                        {"param_after": np.zeros((2, 2), np.float32)})
    files["header is a list"] = snapshot(tmp_path / "c", [1, 2, 3])
    files["missing keys"] = snapshot(tmp_path / "d", {"format": "nn-lesson-snapshots", "version": 2})
    files["wrong types"] = snapshot(tmp_path / "e", {**GOOD, "steps": "many"})
    files["deep JSON"] = snapshot(tmp_path / "f", "[" * 100_000 + "]" * 100_000)
    files["rows do not match steps"] = snapshot(tmp_path / "g", GOOD, {"loss": np.zeros(5, np.float32)})
    files["object array"] = tmp_path / "h.npz"
    with zipfile.ZipFile(files["object array"], "w") as zf:
        npy_member(zf, "header", np.array(json.dumps(GOOD)))
        with zf.open("loss.npy", "w") as out:
            np.lib.format.write_array(out, np.array([{}, {}], dtype=object), allow_pickle=True)
    files["plain .npy"] = tmp_path / "plain.npy"
    np.save(files["plain .npy"], np.zeros(3))
    return files


def _claim_shape(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """Rewrite one member's .npy header to claim another shape (its bytes unchanged)."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    data = members[f"{name}.npy"]
    old_header = data[: data.index(b"\n") + 1]
    new = old_header.replace(b"(2,)", str(shape).encode()).ljust(len(old_header) - 1)[: len(old_header) - 1] + b"\n"
    members[f"{name}.npy"] = new + data[len(old_header):]
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)


def test_hostile_snapshot_files_are_refused_cheaply_in_one_line(tmp_path):
    for sub in "abcdefg":
        (tmp_path / sub).mkdir()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for case, path in hostile_files(tmp_path).items():
        with pytest.raises(SnapshotFileError) as err:
            SnapshotLog.load(path)
        message = str(err.value)
        assert "\n" not in message and str(path) in message, (case, message)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # the 1 GB member was never inflated


def test_the_cli_refuses_a_hostile_file_with_exit_2(tmp_path):
    (tmp_path / "f").mkdir()
    path = snapshot(tmp_path / "f", "[" * 100_000 + "]" * 100_000)
    result = run_cli("--step", "0", "--snapshot", str(path), cwd=tmp_path)
    assert result.returncode == 2 and no_traceback(result.stderr)
    assert "nests" in result.stderr.splitlines()[-1]


# ---- 5. arguments: refused before any work, exit 2, one line ----

@pytest.mark.parametrize("args, words", [
    (["--lr", "1e39"], "largest float32"),
    (["--lr", "nan"], "positive finite"),
    (["--seed", str(2 ** 64)], "2**64-1"),
    (["--name", "x" * 240], "at most 200"),
    (["--name", "bad\x1bname"], "printable"),
    (["--serve", "--port", "70000"], "1..65535"),
    (["--data", "/dev/zero"], "not a regular file"),
    (["--step", "0", "--snapshot", "/dev/null"], "snapshot"),
])
def test_out_of_range_arguments(tmp_path, args, words):
    result = run_cli(*args, "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2 and words in result.stderr.splitlines()[-1], result.stderr
    assert no_traceback(result.stderr) and not (tmp_path / "runs").exists()  # refused before any work
    assert "epoch" not in result.stdout and "training on" not in result.stdout


def test_step_on_a_run_without_steps_says_so(tmp_path, lesson_run):
    import dataclasses

    def before_training(ev):  # the evaluations of a run that stopped before its first step: the first row only
        return dataclasses.replace(ev, loss_by_step=ev.loss_by_step[:1], accuracy_by_step=ev.accuracy_by_step[:1])
    empty = RunRecord(lesson_run.config, lesson_run.students, lesson_run.scaler, lesson_run.initial,
                      SnapshotLog(lesson_run.log.params, lesson_run.log.layers), before_training(lesson_run.train),
                      before_training(lesson_run.heldout), "interrupted")
    path = empty.save(tmp_path / "empty.npz")
    result = run_cli("--step", "0", "--snapshot", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "holds no steps" in result.stderr and "0..-1" not in result.stderr


# ---- 6. markup in names: escaped wherever shown ----

def test_markdown_and_html_in_names_reach_tensorboard_as_text(tmp_path):
    from tensorboard.plugin_util import markdown_to_safe_html
    names = ["Pi|pe", "<img src=x onerror=alert(1)>", "[click](http://example.invalid)", "**bold**"]
    rows = [f"{n},{7 - i},{7 + i % 2},{60 + 5 * i},{'PASS' if i % 2 else 'FAIL'},train" for i, n in enumerate(names)]
    rows += ["Sarah,8,8,85,PASS,train", "Mike,2,5,60,FAIL,heldout", "Emma,7,7,80,PASS,heldout"]
    csv_text = HEADER + "".join(f'"{r.split(",", 1)[0]}",{r.split(",", 1)[1]}\n' for r in rows)
    (tmp_path / "class.csv").write_text(csv_text)
    result = run_cli("--data", "class.csv", "--epochs", "2", "--name", "markup", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(n in result.stdout for n in names)  # the terminal shows them as written
    acc = EventAccumulator(str(tmp_path / "runs/markup"), size_guidance={"tensors": 0})
    acc.Reload()
    page = next(t for t in acc.Tags()["tensors"] if t.startswith("lesson/02"))
    markdown = acc.Tensors(page)[0].tensor_proto.string_val[0].decode()
    rendered = markdown_to_safe_html(markdown)
    assert "<img" not in rendered and "<a " not in rendered and "<strong>bold" not in rendered
    table = rendered[rendered.index("<table>"): rendered.index("</table>")]
    columns = table.split("<tr>")[1].count("<th")
    widths = {row.count("<td") for row in table.split("<tr>")[2:]}
    assert columns == 5 and widths == {columns}, widths  # "|" in a name did not add a column
    for tag in acc.Tags()["tensors"]:
        assert "\x1b" not in tag


# ---- 7. CSV errors name the right row and column ----

@pytest.mark.parametrize("body, row, column", [
    ('"Sarah,8,8,85,PASS,train\nMike,2,5,60,FAIL,train\nEmma,7,7,80,PASS,train\n', 2, "name"),
    ('"Sa,rah",8,\xff8,85,PASS,train\n', 2, "hours_slept"),
    ('"Sa\nrah",8,8,85,PASS,train\nMike,two,5,60,FAIL,train\n', 3, "hours_studied"),
    ('Sarah,8,8,85,PASS,train\n\nMike,2,5,600,FAIL,train\n', 4, "previous_score"),
])
def test_csv_errors_point_at_the_cell(tmp_path, body, row, column):
    path = tmp_path / "bad.csv"
    path.write_bytes((HEADER + body).encode().replace("\xff".encode(), b"\xff"))  # a lone 0xff byte: not UTF-8
    result = run_cli("--data", str(path), cwd=tmp_path)
    assert result.returncode == 2 and no_traceback(result.stderr)
    assert f"row {row}, column '{column}'" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


KILLED_AT_PUBLISH = """
import os, signal, sys
from nn_lesson.lesson.run import folder
real_rename = os.rename

def rename(src, dst):
    if os.path.basename(str(dst)) == "published" and "nn-lesson-staging" not in str(dst):   # the publishing rename
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst)
folder.os.rename = rename
from nn_lesson.lesson.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_at_its_publishing_rename_leaves_nothing_that_blocks_or_shows(tmp_path):
    """SIGKILL exactly at the rename that publishes: the empty folder it reserved under its name and its staging
    folder are removed by the next run, and the name is free again."""
    logdir = tmp_path / "runs"
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_PUBLISH, "--epochs", "1", "--quiet", "--name",
                             "published", "--logdir", str(logdir)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    area = tmp_path / ".runs.nn-lesson-staging"
    assert (logdir / "published").is_dir() and not any((logdir / "published").iterdir())   # the state it left
    assert [p.name for p in area.iterdir()] == ["published"]
    again = run_cli("--epochs", "1", "--quiet", "--name", "published", "--logdir", str(logdir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in logdir.iterdir()) == ["published"] and not list(area.iterdir())
    assert len(RunRecord.load(logdir / "published" / "snapshots.npz").log) == 6
    assert not {".nn-lesson-owner", ".nn-lesson-publishing"} & {p.name for p in (logdir / "published").iterdir()}
