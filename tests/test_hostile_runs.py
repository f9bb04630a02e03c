"""Reliability, round 2: run files that are well framed but wrong inside, routes that meet OS errors, a
generated corpus against every route of the Lesson tab, and a case for each defence that only it refuses.

The rule everywhere: one line that names the file and what is wrong (exit 2 at the terminal, 4xx JSON from the
tab), never a traceback or a 500; non-finite numbers travel as JSON null."""

import json
import os
import random
import signal
import threading
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.plugins import base_plugin

from conftest import run_cli
from nn_lesson.hooks import SnapshotFileError, SnapshotLog
from nn_lesson.hooks import snapshot_file
from nn_lesson.lesson.board.plugin import LessonPlugin
from nn_lesson.lesson.run.record import RunRecord

ROUTES = ("run", "step", "decision_map")


# ---- building files: the real run's members, changed one way each ----
def read_members(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as zf:
        arrays = {i.filename[:-4]: np.lib.format.read_array(zf.open(i), allow_pickle=False) for i in zf.infolist()}
    return json.loads(arrays.pop("header").item()), arrays


def write_members(path: Path, header: dict | str, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in [("header", np.array(header if isinstance(header, str) else json.dumps(header))),
                            *arrays.items()]:
            with zf.open(zipfile.ZipInfo(f"{name}.npy"), "w") as out:
                np.lib.format.write_array(out, array, allow_pickle=array.dtype.hasobject)
    return path


def _set(arrays: dict, name: str, value: np.ndarray) -> None:
    arrays[name] = value


def _labels_out_of_range(arrays):
    labels = arrays["record:labels"].copy()
    labels[2] = 7
    arrays["record:labels"] = labels


def _sample_out_of_range(arrays):
    samples = arrays["samples"].copy()
    samples[5, 0] = 99
    arrays["samples"] = samples


# case -> (change to the header, change to the arrays, words of the refusal)
INSIDE = {
    "a missing column": (None, lambda a: a.pop("loss"), "column 'loss' is missing"),
    "a column of strings": (None, lambda a: _set(a, "loss", np.array(["x"] * len(a["loss"]))), "<U1"),
    "big-endian numbers": (None, lambda a: _set(a, "loss", a["loss"].astype(">f4")), ">f4"),
    "datetime64 steps": (None, lambda a: _set(a, "step", a["step"].astype("datetime64[s]")), "<M8"),
    "labels out of range": (None, _labels_out_of_range, "labels must be 0"),
    "one name for ten students": (lambda h: h["record"].update(names=["Sarah"]), None, "'features' has shape"),
    "features of the wrong width": (None, lambda a: _set(a, "record:features", a["record:features"][:, :2]),
                                    "'features' has shape (10, 2), expected (10, 3)"),
    "samples out of range": (None, _sample_out_of_range, "samples must name training students"),
    "float labels": (None, lambda a: _set(a, "record:labels", a["record:labels"].astype(np.float32)), "labels"),
    "half-precision weights": (None, lambda a: _set(a, "param_before", a["param_before"].astype(np.float16)),
                               "float16"),
    "a network that is not the lesson's": (lambda h: h["params"][0].update(name="conv.weight"), None,
                                           "not the lesson network"),
    "settings of the wrong type": (lambda h: h["record"]["config"].update(lr="fast"), None, "lr"),
}


def changed(source: Path, target: Path, header_change=None, array_change=None) -> Path:
    header, arrays = read_members(source)
    if header_change:
        header_change(header)
    if array_change:
        array_change(arrays)
    return write_members(target, header, arrays)


@pytest.fixture(scope="module")
def source(written_run) -> Path:
    return written_run[0] / "snapshots.npz"


def client_for(logdir: Path) -> werkzeug_test.Client:
    app = application.TensorBoardWSGI([LessonPlugin(base_plugin.TBContext(logdir=str(logdir)))])
    return werkzeug_test.Client(app, wrappers.Response)


def get(client, route: str, **args) -> tuple[int, object, str]:
    response = client.get("/data/plugin/lesson/" + route, query_string=args)
    return response.status_code, response.get_json(silent=True), response.content_type


# ---- 1. well-framed files that are wrong inside ----
@pytest.mark.parametrize("case", sorted(INSIDE))
def test_a_run_wrong_inside_is_one_line_everywhere(case, source, tmp_path):
    header_change, array_change, words = INSIDE[case]
    path = changed(source, tmp_path / "runs" / "bad" / "snapshots.npz", header_change, array_change)
    with pytest.raises(SnapshotFileError) as err:
        RunRecord.load(path)
    assert words in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)
    result = run_cli("--step", "0", "--snapshot", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and words in result.stderr.strip().splitlines()[-1]
    client = client_for(tmp_path / "runs")
    for route in ROUTES:
        status, body, kind = get(client, route, run="bad", step="0")
        assert status == 400 and kind == "application/json" and words in body["error"], (route, body)


def test_a_step_of_nothing_but_nan_is_null_not_a_500(source, tmp_path):
    def poison(arrays):
        for name in ("loss", "param_before", "param_grad", "param_after", "outputs", "inputs", "act:hidden_act"):
            values = arrays[name].copy()
            values[3] = np.nan
            arrays[name] = values
    changed(source, tmp_path / "runs" / "nan" / "snapshots.npz", None, poison)
    client = client_for(tmp_path / "runs")
    status, step, _ = get(client, "step", run="nan", step="3")
    assert status == 200 and step["loss"] is None and step["params"]["hidden.weight"]["after"][0][0] is None
    for route in ROUTES:
        status, body, kind = get(client, route, run="nan", step="3")
        assert status == 200 and kind == "application/json", (route, body)


# ---- 2. the routes meet the file system ----
def test_os_errors_are_4xx_json(written_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(written_run[0], runs / "ok")
    os.symlink(runs / "loop", runs / "loop")                         # a symlink loop
    (runs / "locked").mkdir()
    (runs / "locked" / "snapshots.npz").mkdir()                      # a folder where the file should be
    client = client_for(runs)
    status, body, _ = get(client, "runs")
    assert status == 200 and body["runs"] == ["ok"]
    for name in ("loop", "loop/x", "x" * 300, "ok/" + "y" * 5000, "locked", "%00"):
        for route in ROUTES:
            status, body, kind = get(client, route, run=name, step="0")
            assert 400 <= status < 500 and kind == "application/json" and body["error"], (route, name, status)


def test_a_real_run_outside_the_logdir_is_never_served(written_run, tmp_path):
    """The secret run exists beside the logdir; no spelling of a path reaches it."""
    runs = tmp_path / "runs"
    shutil.copytree(written_run[0], runs / "first-lesson")
    secret = tmp_path / "outside" / "secret"
    shutil.copytree(written_run[0], secret)
    os.symlink(secret, runs / "escape")
    client = client_for(runs)
    for name in ("../outside/secret", "first-lesson/../../outside/secret", str(secret), "escape",
                 "./../outside/secret", "first-lesson/../../../" + str(secret).lstrip("/"), "escape/."):
        for route in ROUTES:
            status, body, _ = get(client, route, run=name, step="0")
            assert status == 400 and "steps" not in body and "params" not in body, (route, name, body)


def test_dot_dot_is_refused_even_where_it_would_land_inside(written_run, tmp_path):
    """Only the '..' check refuses this one: the path resolves to a run under the logdir."""
    runs = tmp_path / "runs"
    shutil.copytree(written_run[0], runs / "first-lesson")
    (runs / "sub").mkdir()
    status, body, _ = get(client_for(runs), "run", run="sub/../first-lesson")
    assert status == 400 and "'..' is refused" in body["error"]


# ---- 3. a generated corpus against every route ----
NAME_PARTS = ["first-lesson", "..", ".", "", "/", "//", "\\", "%2e%2e", "\x00", "\u202e", "é", "x" * 256,
              "snapshots.npz", "~", "$HOME", "*", "?", " ", "\n", "C:", "runs", "a" * 4096]


def hostile_name(rng: random.Random) -> str:
    return "/".join(rng.choice(NAME_PARTS) for _ in range(rng.randint(1, 4)))


def hostile_bytes(rng: random.Random, good: bytes) -> bytes:
    """The real file, broken one way: bytes flipped, cut short, shuffled, grown or replaced."""
    data = bytearray(good)
    how = rng.randrange(5)
    if how == 0:
        for _ in range(rng.randint(1, 50)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 1:
        data = data[: rng.randrange(len(data))]
    elif how == 2:
        cut = rng.randrange(len(data))
        data = data[cut:] + data[:cut]
    elif how == 3:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096)))
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 4096)))
    return bytes(data)


def hostile_members(rng: random.Random, source: Path, target: Path) -> None:
    """The real members, each changed in kind, shape or value at random, framed correctly."""
    header, arrays = read_members(source)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(arrays))
        how = rng.randrange(6)
        values = arrays[name]
        if how == 0:
            arrays.pop(name)
        elif how == 1:
            arrays[name] = values.astype(rng.choice([np.int8, np.float16, np.float64, np.uint64, np.bool_]))
        elif how == 2 and values.ndim:
            arrays[name] = values[: rng.randrange(values.shape[0] + 1)]
        elif how == 3 and values.size and values.dtype.kind in "fiu":
            flat = values.astype(np.float64).reshape(-1)
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -1e300, 1e300, -1, 10 ** 9])
            arrays[name] = flat.reshape(values.shape).astype(values.dtype) if values.dtype.kind == "f" else flat.reshape(values.shape)
        elif how == 4:
            arrays[name] = values.reshape(-1) if values.ndim > 1 else values.reshape(-1, 1)
        else:
            record = header.get("record", {})
            key = rng.choice(["names", "config", "stopped", "data", "kind"])
            record[key] = rng.choice([None, 1, "x", [], {}, ["a"] * 3, {"lr": -1}])
    write_members(target, header, arrays)


def test_every_route_answers_json_2xx_or_4xx_under_a_generated_corpus(source, tmp_path):
    rng = random.Random(20261201)
    runs = tmp_path / "runs"
    good = source.read_bytes()
    client = client_for(runs)
    answered = {}
    for case in range(160):
        folder = runs / f"case{case}"
        folder.mkdir(parents=True)
        if case % 2:
            (folder / "snapshots.npz").write_bytes(hostile_bytes(rng, good))
        else:
            hostile_members(rng, source, folder / "snapshots.npz")
        for route in ROUTES:
            for name in (f"case{case}", hostile_name(rng)):
                step = rng.choice(["0", "3", "359", "-1", "", "x", "99999999999", "1e3"])
                status, body, kind = get(client, route, run=name, step=step)
                assert kind == "application/json" and isinstance(body, dict), (case, route, name, status)
                assert 200 <= status < 500, (case, route, name, body)
                answered[status] = answered.get(status, 0) + 1
        status, body, kind = get(client, "runs")
        assert status == 200 and kind == "application/json"
        shutil.rmtree(folder)
    assert answered.get(400, 0) > 100 and answered.get(200, 0) > 0   # the corpus reached both outcomes


# ---- 4. each defence of the file layer has a case only it refuses ----
def test_an_honest_bomb_is_refused_by_the_inflation_limit_alone(tmp_path):
    """Its header agrees with its rows and every declared size with the zip directory: only the inflation limit
    stands between it and 64 MB of zeros (the limit scales with the file: a real run inflates 1x)."""
    rows = 2 ** 24
    header = {"format": "nn-lesson-snapshots", "version": 2, "steps": rows, "layers": [], "stat_bins": 0,
              "params": []}
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(zipfile.ZipInfo("header.npy"), "w") as out:
            np.lib.format.write_array(out, np.array(json.dumps(header)))
        info = zipfile.ZipInfo("loss.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as out:
            np.lib.format.write_array(out, np.zeros(rows, np.float32))
    assert path.stat().st_size < 2 ** 20
    with pytest.raises(SnapshotFileError, match="would inflate"):
        SnapshotLog.load(path)


def test_a_garbled_npy_header_is_one_line(tmp_path):
    path = tmp_path / "garbled.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<U5\n")   # the dict never closes
    with pytest.raises(SnapshotFileError, match="corrupt"):
        SnapshotLog.load(path)


def _count_reads(monkeypatch) -> list:
    reads = []
    original = snapshot_file._read_member

    def counted(zf, name, member):
        reads.append(name)
        return original(zf, name, member)
    monkeypatch.setattr(snapshot_file, "_read_member", counted)
    return reads


def test_a_member_declaring_more_than_it_holds_is_refused_before_any_read(monkeypatch, tmp_path):
    header = {"format": "nn-lesson-snapshots", "version": 2, "steps": 10 ** 9, "layers": [], "stat_bins": 0,
              "params": []}
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open(zipfile.ZipInfo("header.npy"), "w") as out:
            np.lib.format.write_array(out, np.array(json.dumps(header)))
        with zf.open(zipfile.ZipInfo("loss.npy"), "w") as out:  # declares 10**9 floats, holds 4
            np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9,)})
            out.write(np.zeros(4, np.float32).tobytes())
    reads = _count_reads(monkeypatch)
    with pytest.raises(SnapshotFileError, match="declares shape"):
        SnapshotLog.load(path)
    assert reads == []                                               # not even the header was read in full


def test_python_objects_are_refused_as_objects(monkeypatch, tmp_path):
    header = {"format": "nn-lesson-snapshots", "version": 2, "steps": 2, "layers": [], "stat_bins": 0, "params": []}
    path = tmp_path / "objects.npz"
    write_members(path, header, {"loss": np.array([{}, {}], dtype=object)})
    reads = _count_reads(monkeypatch)
    with pytest.raises(SnapshotFileError, match="Python objects"):
        SnapshotLog.load(path)
    assert reads == []


# ---- 5. every check before the work ----
def test_a_logdir_that_is_a_dangling_symlink_is_refused_before_training(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "runs")
    result = run_cli("--name", "n", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr.strip().splitlines()[-1]
    assert "training on" not in result.stdout and "Traceback" not in result.stderr
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / ".runs.nn-lesson-staging").exists()
    os.mkdir(tmp_path / "nowhere")                                # the same name works once the link leads somewhere
    again = run_cli("--name", "n", "--quiet", "--epochs", "1", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_bridge_keeps_what_it_captured_on_a_signal(tmp_path, sig, code):
    from test_adversarial import start, wait_for_line
    from nn_lesson.lesson.run.record import load_record
    proc = start("bridge", "--epochs", "10000", "--name", "b", "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    wait_for_line(proc.stdout, r"^epoch +3/")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "writing what was captured" in err
    log, record, members = load_record(tmp_path / "runs" / "b" / "snapshots.npz", "bridge")
    assert len(log) > 0 and record["stopped"] == f"interrupted by {signal.Signals(sig).name}"
    assert len(members["heldout_accuracy_by_epoch"]) >= 3                # the epochs it finished, and more
    assert not list((tmp_path / ".runs.nn-lesson-staging").iterdir())


def test_serve_on_a_taken_port_is_refused_before_training(tmp_path):
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--serve", "--port", str(port), "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2 and "already in use" in result.stderr.strip().splitlines()[-1]
    assert "training on" not in result.stdout and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, words", [
    (["--epochs", "1000000000"], "at most 200,000"),
    (["--epochs", "40000", "--batch-size", "1"], "240,000 steps"),
    (["lab", "--lr", "0.5", "5", "--epochs", "40000"], "240,000 steps"),  # every lab run is that long: none is trained
    (["--threads", "100000000"], "cores of this machine"),
    (["bridge", "--hidden", "100000000"], "at most 4,096"),
    (["bridge", "--epochs", "1000000000"], "at most 10,000"),
    (["bridge", "--threads", "100000000"], "cores of this machine"),
])
def test_sizes_are_bounded_before_any_allocation(tmp_path, args, words):
    result = run_cli(*args, "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2 and words in result.stderr.strip().splitlines()[-1], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


# ---- 5. files that change while the server reads them ----
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two lesson runs of 30 steps whose files are the same size, told apart by lr (0.5 and 2.0)."""
    root = tmp_path_factory.mktemp("two-runs")
    for lr in ("0.5", "2.0"):
        result = run_cli("--quiet", "--name", f"lr{lr}", "--lr", lr, "--epochs", "5", "--logdir", str(root), cwd=root)
        assert result.returncode == 0, result.stderr
    a, b = root / "lr0.5" / "snapshots.npz", root / "lr2.0" / "snapshots.npz"
    assert a.stat().st_size == b.stat().st_size
    return a, b


def test_a_link_anywhere_on_the_way_is_never_followed(two_runs, tmp_path):
    """Not even a link that stays inside the logdir: every folder and the file are opened without following one."""
    a, b = two_runs
    runs = tmp_path / "runs"
    (runs / "real").mkdir(parents=True)
    shutil.copy(a, runs / "real" / "snapshots.npz")
    (runs / "file-link").mkdir()
    os.symlink(b, runs / "file-link" / "snapshots.npz")                   # the file: a link outside
    (runs / "inner-link").mkdir()
    os.symlink(runs / "real" / "snapshots.npz", runs / "inner-link" / "snapshots.npz")   # a link inside
    os.symlink(runs / "real", runs / "folder-link")                        # a folder on the way
    (runs / "deep").mkdir()
    os.symlink(b.parent.parent, runs / "deep" / "up")                      # deep/up/lr2.0: a link mid-way
    client = client_for(runs)
    assert get(client, "runs")[1]["runs"] == ["real"]
    assert get(client, "run", run="real")[0] == 200
    for name in ("file-link", "inner-link", "folder-link", "deep/up/lr2.0", "folder-link/."):
        for route in ROUTES:
            status, body, _ = get(client, route, run=name, step="0")
            assert status == 400 and "symbolic link" in body["error"] and "steps" not in body, (name, route, body)


def answer_within(call, seconds: float = 30):
    """call() in a thread; (done, result). A bound on a failure only: an open that blocks never returns."""
    box = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(box), box[0] if box else None


def test_a_fifo_or_a_folder_in_place_of_the_file_is_refused_without_blocking(tmp_path):
    runs = tmp_path / "runs"
    (runs / "pipe").mkdir(parents=True)
    fifo = runs / "pipe" / "snapshots.npz"
    os.mkfifo(fifo)
    client = client_for(runs)
    plugin = LessonPlugin(base_plugin.TBContext(logdir=str(runs)))
    try:
        for route in ROUTES:
            done, (status, body, kind) = answer_within(lambda: get(client, route, run="pipe", step="0"))
            assert done and status == 400 and "not a regular file (a pipe)" in body["error"], (route, body)
        done, described = answer_within(lambda: plugin._describe("pipe"))          # as /runs would describe it
        assert done and described["kind"] == "unreadable"
    finally:  # a reader blocked on the FIFO (a regression) is let go: a writer opens it
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_an_atomic_replace_is_read_afresh_at_the_next_request(two_runs, tmp_path):
    """The new file has the old one's size and mtime, as a copy that keeps times has: only its inode differs."""
    a, b = two_runs
    runs = tmp_path / "runs"
    (runs / "swap").mkdir(parents=True)
    target = runs / "swap" / "snapshots.npz"
    shutil.copy(a, target)
    stamp = os.stat(target).st_mtime_ns
    client = client_for(runs)
    for source, lr in ((b, 2.0), (a, 0.5), (b, 2.0)):
        shutil.copy(source, runs / "swap" / ".incoming")
        os.utime(runs / "swap" / ".incoming", ns=(stamp, stamp))
        before = get(client, "run", run="swap")[1]["config"]["lr"]
        os.replace(runs / "swap" / ".incoming", target)
        assert get(client, "run", run="swap")[1]["config"]["lr"] == lr != before
        assert get(client, "step", run="swap", step="3")[1]["lr"] == lr
        assert {d["run"]: d["kind"] for d in get(client, "runs")[1]["details"]} == {"swap": "lesson"}


@pytest.mark.server
def test_swaps_under_a_run_on_a_real_server_never_serve_outside_data_and_never_hang(two_runs, tmp_path):
    """16 threads read run `link` from a real tensorboard while its snapshots.npz is replaced, over and over, by a
    link to a run outside the logdir (lr 2.0), by a FIFO, and by the run's own file (lr 0.5). Every answer is the
    run's own numbers or 4xx JSON; none waits on the FIFO; with the file back, the run's own file is served."""
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor
    from nn_lesson.lesson.board.serve import start_tensorboard
    a, b = two_runs
    runs = tmp_path / "runs"
    (runs / "link").mkdir(parents=True)
    own = tmp_path / "own.npz"                       # kept outside the logdir: hard-linked in for each swap
    shutil.copy(a, own)
    target = runs / "link" / "snapshots.npz"
    os.link(own, target)
    proc, url = start_tensorboard(runs, announce=False)
    done = threading.Event()
    swaps = [0]

    def swapper():
        incoming = runs / "link" / ".incoming"
        while not done.is_set():
            for make in (lambda: os.symlink(b, incoming), lambda: os.mkfifo(incoming), lambda: os.link(own, incoming)):
                make()
                os.replace(incoming, target)
                swaps[0] += 1

    def fetch(path):
        try:
            with urllib.request.urlopen(url + "data/plugin/lesson/" + path, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    start = threading.Barrier(16)

    def reader(k):
        start.wait(timeout=60)
        return [(path, fetch(path)) for path in ("run?run=link", "step?run=link&step=3", "runs") * 4]
    try:
        assert fetch("run?run=link")[1]["config"]["lr"] == 0.5
        swapping = threading.Thread(target=swapper, daemon=True)
        swapping.start()
        with ThreadPoolExecutor(16) as pool:
            answers = [pair for part in pool.map(reader, range(16)) for pair in part]
        done.set()
        swapping.join(timeout=60)
        outside, statuses = [], {}
        for path, (status, body) in answers:
            statuses[status] = statuses.get(status, 0) + 1
            assert status == 200 or (400 <= status < 500 and body["error"]), (path, status, body)
            if status == 200 and path != "runs":
                if body.get("config", {}).get("lr", body.get("lr")) != 0.5:
                    outside.append(path)
        assert len(answers) == 16 * 12 and outside == [] and swaps[0] > 3, (len(answers), outside, swaps)
        os.unlink(target)
        os.link(own, target)                                   # the run's own file back in place
        assert fetch("run?run=link")[1]["config"]["lr"] == 0.5
        assert fetch("step?run=link&step=3")[1]["lr"] == 0.5
        assert fetch("runs")[1]["runs"] == ["link"]
    finally:
        done.set()
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize("swap", ["a link outside", "a FIFO"])
def test_a_swap_between_the_open_and_the_read_changes_nothing(two_runs, tmp_path, monkeypatch, swap):
    """Forced at the worst moment: the file is replaced right after the route opened it and before it reads a
    byte. What is read is the opened file (lr 0.5), never the link's target (lr 2.0), and the FIFO is never
    opened; the next request meets the replacement and is refused."""
    import contextlib
    from nn_lesson.lesson.board import plugin as plugin_module
    a, b = two_runs
    runs = tmp_path / "runs"
    (runs / "run").mkdir(parents=True)
    target = runs / "run" / "snapshots.npz"
    shutil.copy(a, target)
    real_opened = plugin_module.opened

    @contextlib.contextmanager
    def swapped_after_open(*args):
        with real_opened(*args) as got:
            incoming = runs / "run" / ".incoming"
            os.symlink(b, incoming) if swap == "a link outside" else os.mkfifo(incoming)
            os.replace(incoming, target)
            yield got
    monkeypatch.setattr(plugin_module, "opened", swapped_after_open)
    client = client_for(runs)
    done, (status, body, _) = answer_within(lambda: get(client, "run", run="run"))
    assert done and status == 200 and body["config"]["lr"] == 0.5
    monkeypatch.setattr(plugin_module, "opened", real_opened)
    done, (status, body, _) = answer_within(lambda: get(client, "step", run="run", step="3"))
    assert done and status == 400 and ("symbolic link" in body["error"] or "a pipe" in body["error"]), body
