"""Streaming a Recorder's log to a folder (Recorder(..., stream_to=)): the same numbers as in memory, read back
lazily, memory held to one flush, a SIGKILLed run keeping every flushed step, a folder that cannot be written
never ending the run."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotFileError, SnapshotLog, StreamedLog
from nn_lesson.hooks.snapshot_log import STAGED_BYTES
from nn_lesson.lesson.board.your_model import write_tensorboard

# One training loop, run here and in a child process that is killed: the same seed gives the same numbers.
LOOP = """
import sys, torch
from torch import nn
from nn_lesson.hooks import CapturePolicy, Recorder

def train(steps, stream_to=None, policy=None, budget=None, on_step=None, grow_at=None, clip_from=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))
    extra = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    with Recorder(model, opt, loss_fn, policy=policy, stream_to=stream_to, memory_budget=budget) as rec:
        for i in range(steps):
            if i == grow_at:  # a parameter joins the optimizer mid-run: later rows are wider
                opt.add_param_group({"params": extra.parameters()})
            x = torch.randn(5 if i % 7 else 3, 3)  # a smaller batch now and then: rows of two shapes
            y = torch.randint(0, 2, (len(x),))
            opt.zero_grad()
            out = model(x)
            loss = loss_fn(out if grow_at is None or i < grow_at else extra(out), y)
            loss.backward()
            if clip_from is not None and i >= clip_from:  # a column that appears mid-run
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
            opt.step()
            if on_step is not None:
                on_step(i)
    return rec

if __name__ == "__main__":
    def say(i):
        print(i, flush=True)
    train(10 ** 6, stream_to=sys.argv[1], policy=CapturePolicy.full(), on_step=say)
"""
namespace: dict = {}
exec(compile(LOOP, "<loop>", "exec"), namespace)
train = namespace["train"]


def assert_same_log(memory: SnapshotLog, streamed: SnapshotLog) -> None:
    assert len(memory) == len(streamed)
    assert memory.header() == streamed.header()  # steps, parameters, layers, absent ranges
    assert list(memory.columns) == list(streamed.columns) or set(memory.columns) == set(streamed.columns)
    for name, column in memory.columns.items():
        a, b = memory.values(name), streamed.values(name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0)), name
    for i in range(len(memory)):
        x, y = memory[i], streamed[i]
        assert (x.step, x.epoch, x.loss, x.lr) == (y.step, y.epoch, y.loss, y.lr)
        for field in ("inputs", "targets", "outputs"):
            u, v = getattr(x, field), getattr(y, field)
            assert (u is None) == (v is None) and (u is None or torch.equal(u, v)), (i, field)
        for field in ("activations", "act_grads", "before", "grads", "after"):
            u, v = getattr(x, field), getattr(y, field)
            assert u.keys() == v.keys() and all(torch.equal(u[k].nan_to_num(-7.0), v[k].nan_to_num(-7.0)) for k in u)
        assert x.stats.keys() == y.stats.keys()
        assert all(torch.equal(x.stats[k]["hist"], y.stats[k]["hist"]) for k in x.stats)


POLICIES = {
    "default": None,
    "every 3rd": CapturePolicy.every_k(3),
    "statistics": CapturePolicy.stats(),
    "statistics and every 4th": CapturePolicy.stats_and_every(4),
}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_a_streamed_log_reads_back_row_by_row_equal_to_the_in_memory_log(tmp_path, policy):
    memory = train(150, policy=policy, grow_at=90, clip_from=40)
    streamed = train(150, stream_to=tmp_path / "s", policy=policy, grow_at=90, clip_from=40)
    reopened = SnapshotLog.load(tmp_path / "s")
    assert isinstance(reopened, StreamedLog) and len(reopened._segments) > 2  # really in several segments
    for log in (streamed.log, reopened):
        assert_same_log(memory.log, log)
    if memory.stats_log is not None:
        assert_same_log(memory.stats_log, streamed.stats_log)
        assert_same_log(memory.stats_log, SnapshotLog.load(tmp_path / "s" / "statistics"))
    # written out as one snapshot file: the same bytes
    memory.log.save(tmp_path / "m.npz")
    reopened.save(tmp_path / "r.npz")
    assert (tmp_path / "m.npz").read_bytes() == (tmp_path / "r.npz").read_bytes()


def test_write_tensorboard_from_a_streamed_log_writes_the_same_run(tmp_path):
    policy = CapturePolicy.stats_and_every(5)
    memory = train(60, policy=policy)
    train(60, stream_to=tmp_path / "s", policy=policy)
    a = write_tensorboard(memory.log, tmp_path / "runs" / "a", stats=memory.stats_log)
    b = write_tensorboard(SnapshotLog.load(tmp_path / "s"), tmp_path / "runs" / "b",
                          stats=SnapshotLog.load(tmp_path / "s" / "statistics"))
    for name in ("snapshots.npz", "statistics.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_memory_holds_one_flush_whatever_the_run_length(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))  # ~530 KiB of numbers a step
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    held = []
    with Recorder(model, opt, nn.CrossEntropyLoss(), policy=CapturePolicy.full(), stream_to=tmp_path / "s") as rec:
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(32, 256)), torch.randint(0, 10, (32,))).backward()
            opt.step()
            held.append(rec._log._memory.held_bytes)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").iterdir())
    assert on_disk > 20 * STAGED_BYTES / 4               # the run is far larger than what memory held ...
    assert max(held) <= STAGED_BYTES + 2 * on_disk / 200  # ... which never exceeded one flush (and a step)
    assert len(SnapshotLog.load(tmp_path / "s")) == 200
    # what memory keeps per segment is small and shared: one layout, parameter list and absent map for them all
    segments = rec.log._segments
    assert len(segments) > 10 and len({id(s.layout) for s in segments if s.steps}) == 1
    assert all(s.members is None for s in segments)  # the tables of members are read again when needed


def test_a_streamed_run_killed_with_sigkill_keeps_its_flushed_rows(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    folder = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(folder.glob("segment-*.npz"))) < 4:  # segment 0 (no rows) and three flushes
            assert child.poll() is None and time.monotonic() < deadline, "the child never flushed three times"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    log = SnapshotLog.load(folder)  # whatever a kill left half-written (a .part file) is not read
    assert len(log) >= 3 * 32
    assert_same_log(train(len(log), policy=CapturePolicy.full()).log, log)


def test_the_default_policy_keeps_a_streamed_folder_within_its_budget(tmp_path, caplog):
    budget = 200_000
    with caplog.at_level(logging.WARNING, logger="nn_lesson"):
        rec = train(400, stream_to=tmp_path / "s", budget=budget)
    assert "does not fit the memory budget" in caplog.text
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").glob("segment-*.npz"))
    assert on_disk <= budget
    steps = rec.log.step.tolist()
    every = steps[1] - steps[0]
    assert every > 1 and steps == list(range(0, 400, every))   # every number of every k-th step ...
    assert len(rec.stats_log) == 400                           # ... and statistics of every step, from step 0
    assert rec.stats_log.step.tolist() == list(range(400))


def test_a_folder_that_cannot_be_written_never_ends_the_run(tmp_path, caplog):
    folder = tmp_path / "s"

    def break_then_mend(i: int) -> None:
        if i == 40:  # the folder is gone and a file stands in its place: every write fails (even as root)
            shutil.move(folder, tmp_path / "moved")
            folder.write_text("not a folder")
        if i == 120:
            folder.unlink()
            shutil.move(tmp_path / "moved", folder)

    with caplog.at_level(logging.WARNING, logger="nn_lesson"):
        rec = train(150, stream_to=folder, policy=CapturePolicy.full(), on_step=break_then_mend)
    assert caplog.text.count("cannot write to") == 1  # said once, not at every flush
    assert_same_log(train(150, policy=CapturePolicy.full()).log, rec.log)  # nothing lost
    assert len(SnapshotLog.load(folder)) == 150


def test_a_streamed_log_still_unwritten_is_refused_in_one_line_when_read(tmp_path):
    folder = tmp_path / "s"

    def break_folder(i: int) -> None:
        if i == 50:
            shutil.move(folder, tmp_path / "moved")
            folder.write_text("")

    rec = train(60, stream_to=folder, policy=CapturePolicy.full(), on_step=break_folder)
    with pytest.raises(SnapshotFileError, match=r"steps \d+\.\.59 could not be written") as err:
        len(rec.log.values("loss"))
    assert "\n" not in str(err.value)
    assert "could not be written" in rec.report().line()      # the report says so; it never raises
    folder.unlink()
    shutil.move(tmp_path / "moved", folder)
    assert len(rec.log.values("loss")) == 60  # room made: the rows in memory go to disk, and read


def test_a_taken_stream_folder_is_numbered_like_run_folders(tmp_path):
    first = train(40, stream_to=tmp_path / "s")
    second = train(10, stream_to=tmp_path / "s")          # a script run twice keeps both streams
    assert first.stream_to == tmp_path / "s" and second.stream_to == tmp_path / "s-2"
    assert len(SnapshotLog.load(tmp_path / "s")) == 40 and len(SnapshotLog.load(tmp_path / "s-2")) == 10
    with pytest.raises(FileExistsError, match="already holds a streamed log"):   # the log itself never writes into one
        StreamedLog(tmp_path / "s")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not a folder") as err:
        train(1, stream_to=tmp_path / "afile")
    with pytest.raises(OSError, match="cannot make the stream folder") as err:
        train(1, stream_to=tmp_path / "afile" / "sub")
    assert "\n" not in str(err.value)


def test_a_damaged_segment_is_refused_in_one_line(tmp_path):
    train(100, stream_to=tmp_path / "s", policy=CapturePolicy.full())
    segment = sorted((tmp_path / "s").glob("segment-*.npz"))[2]
    segment.write_bytes(segment.read_bytes()[:500])
    with pytest.raises(SnapshotFileError, match=f"{segment.name}: truncated or corrupt.*other segments read once "
                                                "this one is moved out") as err:
        SnapshotLog.load(tmp_path / "s")
    assert "\n" not in str(err.value)
    with pytest.raises(SnapshotFileError, match="not a streamed log"):
        SnapshotLog.load(tmp_path)


# ---- SnapshotLog.open: any snapshot file read lazily ----
def test_a_file_opened_lazily_reads_as_the_file_loaded_whole(tmp_path, written_run):
    memory = train(150, policy=None, grow_at=90, clip_from=40).log
    memory.save(tmp_path / "log.npz")
    for path, whole in ((tmp_path / "log.npz", memory), (written_run[0] / "snapshots.npz", None)):
        whole = whole if whole is not None else SnapshotLog.load(path)   # a lesson run: record members read past
        lazy = SnapshotLog.open(path)
        assert_same_log(whole, lazy)
        assert whole.row_shapes == lazy.row_shapes
    with pytest.raises(RuntimeError, match="opened for reading is never written to"):
        lazy.keep_rows([0])


BIG_LOG = """
import resource, sys, torch
from nn_lesson.hooks import SnapshotLog
log = SnapshotLog.open(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
row = log[37]
print(int(row.activations["big"][0, 0]), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_row_of_a_large_file_reads_that_row_not_the_file(tmp_path):
    log = SnapshotLog(layers=["big"])
    for i in range(60):  # 60 rows of 4 MiB: a 240 MiB column
        log.stage_step(i, [("step", i, None), ("act:big", torch.full((1024, 1024), float(i)), None)])
    log.save(tmp_path / "big.npz")
    del log
    script = tmp_path / "read.py"
    script.write_text(BIG_LOG)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "big.npz")], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out[0] == "37"            # the right row ...
    assert int(out[1]) < 60          # ... for a few MiB more of peak memory, not the column's 240 MiB
