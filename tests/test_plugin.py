"""The Lesson tab's routes, through TensorBoard's own WSGI app and a werkzeug test client (as TensorBoard
tests its plugins): the listing, the snapshot's numbers, and refusals of anything outside the logdir."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin

from nn_lesson.lesson.board.plugin import LessonPlugin
from nn_lesson.lesson.run.record import RunRecord

ROUTES = ("run", "step", "decision_map")


@pytest.fixture(scope="module")
def logdir(written_run, tmp_path_factory):
    """runs/first-lesson (the CLI's run), runs/bridge (a short bridge run), runs/escape -> a run folder
    outside the logdir (a symlink), and outside/ beside the logdir."""
    root = tmp_path_factory.mktemp("plugin")
    runs = root / "runs"
    shutil.copytree(written_run[0], runs / "first-lesson")
    shutil.copytree(written_run[0], root / "outside" / "secret")
    os.symlink(root / "outside" / "secret", runs / "escape")
    bridge = subprocess.run([sys.executable, "-m", "nn_lesson", "bridge", "--epochs", "1", "--name", "bridge", "--quiet",
                             "--logdir", str(runs)], cwd=root, capture_output=True, text=True, timeout=300)
    assert bridge.returncode == 0, bridge.stderr
    return runs


@pytest.fixture(scope="module")
def plugin(logdir):
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    return LessonPlugin(context), provider


@pytest.fixture(scope="module")
def client(plugin):
    lesson, provider = plugin
    app = application.TensorBoardWSGI([lesson], data_provider=provider)
    return werkzeug_test.Client(app, wrappers.Response)


@pytest.fixture(scope="module")
def record(written_run):
    return RunRecord.load(written_run[0] / "snapshots.npz")


def get(client, route, **args):
    response = client.get("/data/plugin/lesson/" + route, query_string=args)
    return response.status_code, response.get_json(silent=True)


def test_listed_with_its_module(client):
    listing = client.get("/data/plugins_listing").get_json()
    assert listing["lesson"]["enabled"] and listing["lesson"]["tab_name"] == "Lesson"
    assert listing["lesson"]["loading_mechanism"] == {"type": "IFRAME", "module_path": "/data/plugin/lesson/index.js"}
    js = client.get("/data/plugin/lesson/index.js")
    assert js.status_code == 200 and js.content_type.startswith("application/javascript")
    source = js.get_data(as_text=True)
    assert "export async function render" in source
    assert "http://" not in source.replace("http://www.w3.org/2000/svg", "") and "https://" not in source


def test_runs_lists_only_folders_under_the_logdir(client):
    status, body = get(client, "runs")
    assert status == 200 and body["runs"] == ["bridge", "first-lesson"]   # the symlinked folder is skipped
    assert {d["run"]: d["kind"] for d in body["details"]} == {"bridge": "bridge", "first-lesson": "lesson"}


def test_the_tab_opens_on_the_newest_lesson_run(client, logdir):
    """Not the alphabetically first run (the bridge here), and not an older lesson run."""
    assert get(client, "runs")[1]["default"] == "first-lesson"
    newer = logdir / "z-newer"
    shutil.copytree(logdir / "first-lesson", newer)
    older = logdir / "0-older"
    shutil.copytree(logdir / "first-lesson", older)
    os.utime(older / "snapshots.npz", (1, 1))
    os.utime(newer / "snapshots.npz", None)
    try:
        assert get(client, "runs")[1]["default"] == "z-newer"
    finally:
        shutil.rmtree(newer)
        shutil.rmtree(older)


def test_run_serves_every_steps_loss(client, record):
    status, run = get(client, "run", run="first-lesson")
    assert status == 200 and run["kind"] == "lesson" and run["steps"] == len(record.log) == 360
    assert run["loss"] == record.log.loss.tolist()                               # every step, no sampling
    assert run["config"]["lr"] == 0.5 and run["config"]["seed"] == 0
    assert [p["title"][:2] for p in run["pages"][:11]] == [f"{k:02d}" for k in range(1, 12)]
    assert len(run["story"]) == 11 and run["pages"][5]["row"] == 1            # 06 the network meets ... step 1
    assert "<script" not in "".join(p["html"] for p in run["pages"])
    from nn_lesson.lesson.board.diagram import FIXED_SCALE
    assert run["scale"] == FIXED_SCALE                      # the Images diagrams' scale, the same for every run
    worked = {p["title"][:2]: p["worked"] for p in run["pages"] if p["worked"]}
    assert set(worked) == {"05", "07", "09"}
    grad = record.log[0].grads["output.weight"]             # page 05 works the output weight of largest gradient
    assert worked["05"][0] == "output.weight" and grad[worked["05"][1], worked["05"][2]].abs() == grad.abs().max()


@pytest.mark.parametrize("row", [0, 7, 200])
def test_step_shows_what_changed(client, record, row):
    """The lines that moved most, and the step's students' loss after it, recomputed with a plain StudentNet."""
    status, step = get(client, "step", run="first-lesson", step=str(row))
    snap = record.log[row]
    moves = sorted(((float((snap.after[n] - snap.before[n])[i, j].abs()), [n, i, j])
                    for n in ("hidden.weight", "output.weight") for i in range(snap.before[n].shape[0])
                    for j in range(snap.before[n].shape[1])), key=lambda m: -m[0])
    third = moves[2][0]  # equal moves (within float rounding) are all drawn: which of them comes first is no claim
    assert sorted(m[:3] for m in step["moved"]) == sorted(where for size, where in moves if size >= third * (1 - 1e-5))
    assert [abs(m[3]) for m in step["moved"]] == sorted((abs(m[3]) for m in step["moved"]), reverse=True)
    net = record.trained_model()
    net.load_state_dict(snap.after)
    with torch.no_grad():
        after = torch.nn.functional.cross_entropy(net(snap.inputs), snap.targets.long())
    assert step["loss_after"] == pytest.approx(float(after), rel=1e-6)
    (student,) = step["students"]
    assert student["raw"] == record.training.features[int(snap.samples[0])].tolist()   # 8 h, not +1.25


def test_equal_moves_are_highlighted_alike_and_no_move_is_never_the_largest():
    from nn_lesson.lesson.board.plugin import _moved

    def params(hidden, output):
        return {"hidden.weight": {"update": hidden}, "hidden.bias": {"update": [9.0]}, "output.weight": {"update": output}}
    # the PASS and FAIL rows of output.weight: equal and opposite, apart from float32 rounding
    tied = params([[0.5, 0.0]], [[0.25, 0.1], [-0.25000001, -0.1]])
    assert [m[:3] for m in _moved(tied)] == [["hidden.weight", 0, 0], ["output.weight", 1, 0], ["output.weight", 0, 0]]
    tied_third = params([[0.5, 0.0]], [[0.3, 0.1], [-0.1000000001, -0.05]])
    assert sorted(m[:3] for m in _moved(tied_third)[2:]) == [["output.weight", 0, 1], ["output.weight", 1, 0]]
    silent = params([[0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])      # a dead hidden layer: nothing moved
    assert _moved(silent) == []
    assert _moved(params([[0.0, None]], [[0.0, 2e-9], [0.0, 0.0]])) == [["output.weight", 0, 1, 2e-9]]


@pytest.mark.parametrize("row", [0, 3, 359])
def test_step_serves_the_snapshots_numbers(client, record, row):
    status, step = get(client, "step", run="first-lesson", step=str(row))
    snap = record.log[row]
    assert status == 200 and step["step"] == snap.step and step["loss"] == snap.loss
    hidden = step["params"]["hidden.weight"]
    assert hidden["before"] == snap.before["hidden.weight"].tolist()
    assert hidden["grad"] == snap.grads["hidden.weight"].tolist()
    assert hidden["after"] == snap.after["hidden.weight"].tolist()
    assert hidden["minus_lr_grad"][2][0] == pytest.approx(-0.5 * float(snap.grads["hidden.weight"][2, 0]))
    (student,) = step["students"]
    assert student["name"] == record.students_of(row)[0]
    assert student["loss"] == pytest.approx(snap.loss, rel=1e-6)               # batch of one: its loss
    assert student["pass"] == pytest.approx(float(record.confidences(snap.outputs)[0, 0]))


def test_bridge_runs_are_blocks_with_summary_numbers(client, logdir):
    from nn_lesson.hooks import SnapshotLog
    status, run = get(client, "run", run="bridge")
    assert status == 200 and run["kind"] == "bridge" and run["message"].startswith("bridge run:")
    log = SnapshotLog.load(logdir / "bridge" / "snapshots.npz")
    status, step = get(client, "step", run="bridge", step="1")
    modules = [layer["name"] for layer in run["layers"]]
    assert status == 200 and [b["name"] for b in step["blocks"]] == modules
    assert step["loss"] == pytest.approx(float(log.loss[1]))
    first = log.param_names[0]                       # the first layer's weight, by its module path
    norm = float(log[1].before[first].double().norm())
    block = next(b for b in step["blocks"] if first.startswith(b["name"] + "."))
    assert block["summary"]["weight"]["norm"] == pytest.approx(norm, rel=1e-6)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("run", ["../outside/secret", "..", "first-lesson/../../outside/secret", "/etc",
                                 "escape", "first-lesson/..", "/", "C:/x", "a\\..\\b", "nope", ""])
def test_path_traversal_and_unknown_runs_are_refused(client, logdir, route, run):
    status, body = get(client, route, run=run, step="0")
    assert status == 400 and isinstance(body["error"], str) and "Traceback" not in body["error"]


def test_absolute_path_of_a_real_run_is_refused(client, logdir):
    for route in ROUTES:
        status, body = get(client, route, run=str(logdir / "first-lesson"), step="0")
        assert status == 400 and "absolute" in body["error"]


@pytest.mark.parametrize("args", [{}, {"run": "first-lesson"}, {"run": "first-lesson", "step": "-1"},
                                  {"run": "first-lesson", "step": "360"}, {"run": "first-lesson", "step": "1e3"},
                                  {"run": "first-lesson", "step": "x"}])
def test_missing_or_bad_arguments_are_400_json(client, args):
    for route in ("step", "decision_map") if args else ROUTES:
        status, body = get(client, route, **args)
        assert status == 400 and body["error"]


def test_a_broken_snapshot_is_a_400_not_a_traceback(client, logdir):
    broken = logdir / "broken"
    broken.mkdir()
    (broken / "snapshots.npz").write_bytes(b"PK\x03\x04 not a zip")
    status, body = get(client, "run", run="broken")
    assert status == 400 and "cannot be read" in body["error"]
    shutil.rmtree(broken)


def test_is_active_is_cheap(logdir, tmp_path, monkeypatch):
    """TensorBoard asks often: the walk stops at the first snapshot file, and once one is seen the disk is left
    alone (counted in folder listings, not in seconds)."""
    from nn_lesson.lesson.board import plugin as plugin_module
    listings = []
    real = os.scandir

    def counted(path):
        listings.append(path)
        return real(path)
    monkeypatch.setattr(plugin_module.os, "scandir", counted)
    context = base_plugin.TBContext(logdir=str(logdir))
    plugin = LessonPlugin(context)
    assert plugin.is_active()
    first = len(listings)
    assert 1 <= first <= 3                        # the logdir, then the first run folder: not every run
    assert plugin.is_active() and len(listings) == first
    assert not LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path))).is_active()
    assert not LessonPlugin(base_plugin.TBContext(logdir="")).is_active()


def test_decision_map_is_the_networks_pass_confidence_after_the_step(client, record):
    status, body = get(client, "decision_map", run="first-lesson", step="3")
    assert status == 200 and body["available"]
    grid = body["map"]
    studied, score = grid["studied"], grid["score"]
    # a point of the map, recomputed with a plain StudentNet carrying the weights after step 3
    net = record.trained_model()
    net.load_state_dict(record.log[3].after)
    r, c = 17, 42
    raw = torch.tensor([[studied[c], float(record.training.features[:, 1].mean()), score[r]]])
    with torch.no_grad():
        expected = net(record.scaler(raw)).softmax(1)[0, 0]
    assert abs(grid["pass_confidence"][r][c] - float(expected)) < 1e-5
    status, body = get(client, "decision_map", run="bridge", step="0")
    assert status == 200 and body == {"available": False}


# ---- a new run from the tab ----
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}      # werkzeug's test client sends Host: localhost to port 80


def post(client, body, headers=None, route="new_run", environ=None):
    response = client.post("/data/plugin/lesson/" + route, data=body, headers=headers or {},
                           environ_base={**LOCAL, **(environ or {})})
    return response.status_code, response.get_json(silent=True)


@pytest.fixture(scope="module")
def tab(plugin):
    """The header the tab sends: this server's token."""
    return {"X-Lesson-New-Run": plugin[0]._gate.token}


def listing(logdir):
    return sorted(p.name for p in logdir.iterdir())


@pytest.mark.parametrize("case,headers,environ,needle", [
    ("no header", {}, {}, "token"),
    ("the old fixed header", {"X-Lesson-New-Run": "1"}, {}, "token"),
    ("a token one character off", "OFF", {}, "token"),
    ("another origin", {"Origin": "http://evil.example"}, {}, "another origin"),
    ("Origin null", {"Origin": "null"}, {}, "another origin"),
    ("cross-site", {"Sec-Fetch-Site": "cross-site"}, {}, "cross-site"),
    ("same-site", {"Sec-Fetch-Site": "same-site"}, {}, "same-site"),
    ("a peer on the network", {}, {"REMOTE_ADDR": "192.0.2.2"}, "192.0.2.2"),
    ("no peer address", {}, {"REMOTE_ADDR": ""}, "this machine's own user"),
    ("DNS rebinding", {"Host": "rebind.test", "Origin": "http://rebind.test"}, {}, "rebind.test"),
    ("a loopback name of another port", {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080"}, {}, "8080"),
    ("a name ending in a loopback one", {"Host": "localhost.evil.test"}, {}, "evil"),
    ("a malformed Host", {"Host": "[::1"}, {}, "loopback"),
])
def test_new_run_is_the_local_users_alone(client, logdir, tab, case, headers, environ, needle):
    """Each request is refused by one check alone: everything else about it is the tab's own request."""
    if headers == "OFF":
        token = tab["X-Lesson-New-Run"]
        headers = {"X-Lesson-New-Run": token[:-1] + ("A" if token[-1] != "A" else "B")}
    else:
        headers = {**tab, **headers}
        if case in ("no header", "the old fixed header"):
            headers.pop("X-Lesson-New-Run") if case == "no header" else None
    before = listing(logdir)
    status, body = post(client, '{"epochs": 1}', headers, environ=environ)
    assert status == 403 and needle in body["error"] and "\n" not in body["error"], (case, body)
    assert listing(logdir) == before


def test_what_the_tab_itself_sends_passes_every_check(client, tab):
    """The checks above refuse by what they look at, not by refusing everything: the same request the tab sends,
    with its Origin, Sec-Fetch-Site and a loopback Host of this port in each spelling, reaches the settings."""
    for host in ("localhost", "localhost:80", "127.0.0.1", "127.0.0.2:80", "[::1]", "[::1]:80"):
        headers = {**tab, "Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        for peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            status, body = post(client, '{"activation": "gelu"}', headers, environ={"REMOTE_ADDR": peer})
            assert status == 400 and "one of" in body["error"], (host, peer, body)
    response = client.get("/data/plugin/lesson/new_run", headers=tab, environ_base=LOCAL)
    assert response.status_code == 403 and "POST" in response.get_json()["error"]


@pytest.mark.parametrize("flags,env,peer,needle", [
    ({"bind_all": True}, {}, "127.0.0.1", "listens beyond this machine"),
    ({"host": "0.0.0.0"}, {}, "127.0.0.1", "listens beyond this machine"),
    ({"host": "192.0.2.2"}, {}, "127.0.0.1", "listens beyond this machine"),
    ({"bind_all": True}, {"NN_LESSON_NEW_RUN": "on"}, "192.0.2.2", "192.0.2.2"),
    ({"host": "127.0.0.1"}, {"NN_LESSON_NEW_RUN": "off"}, "127.0.0.1", "turned off"),
])
def test_new_run_is_off_on_a_server_that_listens_beyond_loopback(tmp_path, monkeypatch, capsys, flags, env, peer, needle):
    import argparse
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = base_plugin.TBContext(logdir=str(tmp_path), flags=argparse.Namespace(
        **{"bind_all": False, "host": None, "port": 6006, **flags}))
    lesson = LessonPlugin(context)
    printed = capsys.readouterr().err
    client = werkzeug_test.Client(application.TensorBoardWSGI([lesson]), wrappers.Response)
    status, body = post(client, '{"epochs": 1}', {"X-Lesson-New-Run": lesson._gate.token}, environ={"REMOTE_ADDR": peer})
    assert status == 403 and needle in body["error"], body
    assert list(tmp_path.iterdir()) == []
    assert ("'+ run' is off" in printed) == (env.get("NN_LESSON_NEW_RUN") != "on")


def test_the_token_is_printed_for_the_user_and_taken_from_the_environment(tmp_path, monkeypatch, capsys):
    import argparse
    flags = argparse.Namespace(bind_all=False, host=None, port=6123)
    first = LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path), flags=flags))
    second = LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path), flags=flags))
    printed = capsys.readouterr().err
    assert first._gate.token != second._gate.token and len(first._gate.token) >= 24      # random for each start
    assert f"http://localhost:6123/ with #lesson&token={first._gate.token}" in printed
    monkeypatch.setenv("NN_LESSON_TOKEN", "a-token-of-the-users-own-choosing")
    assert LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path)))._gate.token == "a-token-of-the-users-own-choosing"
    monkeypatch.setenv("NN_LESSON_TOKEN", "short")                                      # too short to guard
    assert LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path)))._gate.token != "short"


@pytest.mark.parametrize("body,status,needle", [
    ("[" * 100_000, 413, "at most 4096"), ('{"a":' * 50_000, 413, "at most 4096"),
    ("[" * 3000, 400, "nests"), ('{"a":' * 800, 400, "nests"), ('{"lr": {"x": 1}}', 400, "nests"),
    ('{"lr": [1]}', 400, "nests"), ('{"lr": "[[[[" }', 400, "lr:"), (b"\xff\xfe{}", 400, "not JSON"),
    ('{"lr": 1' + " " * 5000 + "}", 413, "at most 4096")])
def test_a_malformed_body_is_4xx_json_never_a_500(client, logdir, tab, body, status, needle):
    before = listing(logdir)
    code, answer = post(client, body, tab)
    assert code == status and needle in answer["error"], answer
    assert listing(logdir) == before


def test_a_body_is_bounded_whether_or_not_it_says_its_length(client, logdir, tab):
    """A chunked body (no Content-Length) is read no further than the bound; a declared length over the bound
    is refused before reading at all (here it declares a gigabyte and sends two bytes)."""
    import io
    before = listing(logdir)
    for body, environ in ((b'{"lr": 1' + b" " * 10_000 + b"}", {"wsgi.input_terminated": True}),
                          (b"{}", {"CONTENT_LENGTH": str(10 ** 9)})):
        built = werkzeug_test.EnvironBuilder("/data/plugin/lesson/new_run", method="POST", headers=tab,
                                             input_stream=io.BytesIO(body), environ_base=LOCAL).get_environ()
        built.pop("CONTENT_LENGTH")            # as a chunked request arrives
        built.update({**LOCAL, **environ})
        response = wrappers.Response(*werkzeug_test.run_wsgi_app(client.application, built, buffered=True))
        assert response.status_code == 413 and "at most 4096" in response.get_json()["error"], response.get_json()
    assert listing(logdir) == before


@pytest.mark.parametrize("body,needle", [("not json", "not JSON"), ("[1]", "JSON object"),
                                         ('{"lr": -1}', "lr:"), ('{"lr": "x"}', "lr:"),
                                         ('{"epochs": 100000}', "at most 500"), ('{"activation": "gelu"}', "one of"),
                                         ('{"lr": 1, "rm": "-rf"}', "unknown setting"), ('{"batch_size": 7}', "batch"),
                                         ('{"lr": "nan"}', "lr:"), ('{"seed": 1e400}', "seed:"), ('{"init": 1}', "one of"),
                                         ('{"epochs": null}', "epochs:")])
def test_new_run_settings_are_checked_before_training(client, logdir, tab, body, needle):
    before = listing(logdir)
    status, answer = post(client, body, tab)
    assert status == 400 and needle in answer["error"], answer
    assert listing(logdir) == before


@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    """A client whose runs are 'trained' by a stand-in that writes a 1 kB run, and can be held mid-training."""
    from nn_lesson.lesson.board import new_run
    runs = tmp_path / "runs"
    runs.mkdir()
    lesson = LessonPlugin(base_plugin.TBContext(logdir=str(runs)))
    hold = {"entered": threading.Event(), "go": threading.Event()}
    hold["go"].set()

    def train(logdir, settings):
        hold["entered"].set()
        assert hold["go"].wait(timeout=60)
        name = f"run{len(list(logdir.iterdir()))}"
        (logdir / name).mkdir()
        (logdir / name / "snapshots.npz").write_bytes(b"x" * 1000)
        return {"run": name, "exit_code": 0}
    monkeypatch.setattr(new_run, "train_new_run", train)
    client = werkzeug_test.Client(application.TensorBoardWSGI([lesson]), wrappers.Response)
    return client, lesson._gate, hold, runs, {"X-Lesson-New-Run": lesson._gate.token}


def test_one_new_run_at_a_time(fake_training):
    client, gate, hold, runs, tab = fake_training
    hold["go"].clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, client, '{"epochs": 1}', tab)
        assert hold["entered"].wait(timeout=60)            # the first run is training now
        status, body = post(client, '{"epochs": 1}', tab)
        assert status == 409 and "one at a time" in body["error"]
        hold["go"].set()
        assert first.result(timeout=60)[0] == 200
    assert post(client, '{"epochs": 1}', tab)[0] == 200     # and the next one, once it is done
    assert sorted(p.name for p in runs.iterdir()) == ["run0", "run1"]


def test_runs_per_hour_and_bytes_are_bounded_and_said_so(fake_training):
    client, gate, hold, runs, tab = fake_training
    now = [1000.0]
    gate.clock = lambda: now[0]
    gate.runs_per_hour = 2
    assert [post(client, '{"epochs": 1}', tab)[0] for _ in range(2)] == [200, 200]
    for _ in range(5):                                          # a flood: each refused, nothing trained
        status, body = post(client, '{"epochs": 1}', tab)
        assert status == 429 and "at most 2 runs from the tab in an hour" in body["error"], body
    assert post(client, '{"lr": -1}', tab)[0] == 400           # refused settings never spend the bound
    now[0] += 3599
    assert post(client, '{"epochs": 1}', tab)[0] == 429
    now[0] += 1
    assert post(client, '{"epochs": 1}', tab)[0] == 200         # an hour after the first
    assert len(list(runs.iterdir())) == 3
    gate.runs_per_hour = 100
    gate.max_bytes = 3500                                        # three 1 kB runs written: one more may start
    assert post(client, '{"epochs": 1}', tab)[0] == 200
    status, body = post(client, '{"epochs": 1}', tab)
    assert status == 429 and "wrote 0.0 MB" in body["error"] and "never deleted" in body["error"], body
    assert sorted(p.name for p in runs.iterdir()) == ["run0", "run1", "run2", "run3"]   # none removed


def test_new_run_trains_through_the_cli_and_is_listed(client, logdir, tab):
    status, body = post(client, '{"lr": 2, "epochs": 2, "activation": "tanh", "seed": 3, "init": "random"}', tab)
    assert status == 200, body
    record = RunRecord.load(logdir / body["run"] / "snapshots.npz")
    assert (record.config.lr, record.config.activation, record.config.seed, record.config.init) == (2, "tanh", 3, "random")
    assert len(record.log) == 12 and body["run"] in get(client, "runs")[1]["runs"]
    assert get(client, "runs")[1]["default"] == body["run"]           # the newest lesson run
    shutil.rmtree(logdir / body["run"])


def test_new_run_into_an_unwritable_logdir_is_one_json_error(tmp_path):
    not_a_folder = tmp_path / "logdir"
    not_a_folder.write_text("a file, not a folder")
    lesson = LessonPlugin(base_plugin.TBContext(logdir=str(not_a_folder)))
    app = application.TensorBoardWSGI([lesson])
    status, body = post(werkzeug_test.Client(app, wrappers.Response), '{"epochs": 1}',
                        {"X-Lesson-New-Run": lesson._gate.token})
    assert status == 400 and "logdir" in body["error"] and "\n" not in body["error"]


def test_each_page_names_its_moment_and_the_held_out_students_come_from_the_record(client, record):
    """Pages 01-03 are about the start (the loss before any step is served), 04-09 their step, 10 the held-out
    students through the trained weights (their confidences equal the record's final held-out evaluation,
    whether each answer is right from the truth), 11 the end."""
    status, run = get(client, "run", run="first-lesson")
    assert status == 200
    assert [p["moment"] for p in run["pages"]] == ["start"] * 3 + ["step"] * 6 + ["heldout", "end"]
    assert run["train_loss_start"] == pytest.approx(float(record.train.loss_by_step[0]), rel=1e-6)
    held = run["heldout"]
    assert held["names"] == list(record.heldout_names)
    conf = record.heldout.confidence_final
    assert sum(held["confidences"], []) == pytest.approx(conf.flatten().tolist(), abs=1e-6)
    truth = record.held_out.labels
    assert held["right"] == [bool(int(c.argmax()) == int(t)) for c, t in zip(conf, truth)]
    assert sum(held["raw"], []) == pytest.approx(record.held_out.features.flatten().tolist())
    assert held["step"] == int(record.log.step[-1])


def test_a_name_from_the_data_reads_as_written_in_the_page_titles(tmp_path):
    """Escaped once for markdown in the pages, the tab's titles carry the name itself (the tab sets them as
    text, so they stay inert): not '&#60;img src=x …&#62;'."""
    from conftest import run_cli
    data = tmp_path / "students.csv"
    rows = (Path(__file__).parent.parent / "data" / "students.csv").read_text().splitlines()
    rows[1] = rows[1].replace("Sarah", "<img src=x onerror=alert(1)> & Bo|b")
    data.write_text("\n".join(rows) + "\n")
    result = run_cli("--quiet", "--name", "names", "--epochs", "1", "--data", str(data), "--logdir",
                     str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client = werkzeug_test.Client(application.TensorBoardWSGI(
        [LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path / "runs")))]), wrappers.Response)
    status, run = get(client, "run", run="names")
    titles = [p["title"] for p in run["pages"]]
    assert status == 200 and any("<img src=x onerror=alert(1)> & Bo|b" in t for t in titles), titles
    assert not any("&#" in t for t in titles)
    assert "<img" not in "".join(p["html"] for p in run["pages"])            # the page bodies stay escaped
