"""A real `tensorboard` on 127.0.0.1 serves what the lesson wrote, through its HTTP API."""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from nn_lesson.lesson.board.serve import start_tensorboard
from nn_lesson.lesson.board.hparams import SHOWN as HPARAMS_SHOWN
from nn_lesson.lesson.board.lesson_run import DIAGRAM_TAG, GRAPH_TAG, TABLE_TAG
from nn_lesson.lesson.run.record import RunRecord

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(written_run):
    run_dir, _ = written_run
    proc, url = start_tensorboard(run_dir.parent)
    yield url, run_dir.name
    proc.terminate()
    proc.wait(timeout=20)


def get(url: str, path: str, body: dict | None = None, **query):
    full = url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(full, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if response.headers.get_content_type() == "application/json" else raw


def wait_for(fetch, ready, timeout=60):
    """Poll until the server has loaded the run (it reads event files in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ready(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_server_lists_the_run_and_its_dashboards(server):
    url, run = server
    assert run in wait_for(lambda: get(url, "data/runs"), lambda r: run in r)
    plugins = wait_for(lambda: get(url, "data/plugins_listing"),
                       lambda p: all(p[k]["enabled"] for k in ("scalars", "images", "text", "hparams")))
    for name in ("scalars", "images", "text", "graphs", "hparams", "custom_scalars", "lesson"):
        assert plugins[name]["enabled"], name
    assert not plugins["histograms"]["enabled"]          # 4-12 numbers per step: tables, not spiky histograms
    assert plugins["lesson"]["tab_name"] == "Lesson"
    assert plugins["lesson"]["loading_mechanism"]["module_path"] == "/data/plugin/lesson/index.js"


def test_http_api_returns_every_kind(server):
    url, run = server
    loss = wait_for(lambda: get(url, "data/plugin/scalars/scalars", run=run, tag="1 loss/this step's students"),
                    lambda v: len(v) == 360)
    assert len(loss) == 360 and loss[0][1] == 0
    text = get(url, "data/plugin/text/text", run=run, tag="lesson/04 the network meets Sarah")
    assert "Sarah" in text[0]["text"] and "PASS confidence" in text[0]["text"]
    images = wait_for(lambda: get(url, "data/plugin/images/images", run=run, tag=DIAGRAM_TAG), lambda v: len(v) == 360)
    assert [i["step"] for i in images] == list(range(360))  # every step kept, the first one included
    png = get(url, "data/plugin/images/individualImage?" + images[0]["query"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") >= 800       # the IHDR width: readable, not 280 px
    graph_png = get(url, "data/plugin/images/images", run=run, tag=GRAPH_TAG)
    assert len(graph_png) == 1
    tables = get(url, "data/plugin/text/text", run=run, tag=TABLE_TAG)
    assert tables and "<table>" in tables[0]["text"]
    graph = get(url, "data/plugin/graphs/graph", run=run)
    assert b"hidden" in graph and b"output" in graph
    experiment = get(url, "data/plugin/hparams/experiment", body={"experimentName": ""})
    shown = [h for h in experiment["hparamInfos"]][:5]   # the dashboard ticks the first five
    assert [h["displayName"] for h in shown] == HPARAMS_SHOWN and all(h["differs"] for h in shown)
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"hparams/final held-out loss"}
    layout = get(url, "data/plugin/custom_scalars/layout")
    assert any(c["title"] == "size of each parameter" for cat in layout["category"] for c in cat["chart"])


def test_lesson_tab_serves_the_snapshots_numbers(server, written_run):
    url, run = server
    record = RunRecord.load(written_run[0] / "snapshots.npz")
    assert run in get(url, "data/plugin/lesson/runs")["runs"]
    info = get(url, "data/plugin/lesson/run", run=run)
    assert info["steps"] == 360 and info["loss"] == record.log.loss.tolist()
    step = get(url, "data/plugin/lesson/step", run=run, step=3)
    assert step["loss"] == record.log[3].loss == record.log.loss[3].item()
    assert step["params"]["output.weight"]["grad"] == record.log[3].grads["output.weight"].tolist()


def status_of(url: str, path: str, **query) -> tuple[int, dict]:
    try:
        get(url, path, **query)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    return 200, {}


def test_lesson_tab_refuses_paths_outside_the_logdir(server, written_run):
    url, run = server
    for route in ("run", "step", "decision_map"):
        for bad in ("../" + run, "/etc", str(written_run[0]), run + "/../..", "", "nope"):
            code, body = status_of(url, "data/plugin/lesson/" + route, run=bad, step=0)
            assert code == 400 and body["error"], (route, bad)


# ---- "+ run" on a real server: the local user's alone ----
def post_raw(host: str, port: int, body, headers: dict) -> tuple[int, dict, str]:
    """A POST as any client may send it: raw bytes, any Host header (http.client sends ours when given)."""
    import http.client
    connection = http.client.HTTPConnection(host, port, timeout=180)
    try:
        connection.request("POST", "/data/plugin/lesson/new_run", body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw), response.getheader("Content-Type")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def trainer(written_run, tmp_path_factory):
    """A server of its own (runs are trained into its logdir), with a bound of one run an hour."""
    runs = tmp_path_factory.mktemp("new-run") / "runs"
    import shutil
    shutil.copytree(written_run[0], runs / "first-lesson")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NN_LESSON_RUNS_PER_HOUR", "1")
        proc, url = start_tensorboard(runs, announce=False)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    yield runs, port, proc.lesson_token
    proc.terminate()
    proc.wait(timeout=20)


def test_new_run_refuses_everyone_but_the_tab_of_the_user_who_started_it(trainer):
    runs, port, token = trainer
    local = f"127.0.0.1:{port}"
    cases = {
        "curl with the old fixed header": ({"X-Lesson-New-Run": "1"}, '{"epochs": 1}', 403, "token"),
        "curl with no header": ({}, '{"epochs": 1}', 403, "token"),
        "a rebinding page": ({"Host": f"rebind.test:{port}", "Origin": f"http://rebind.test:{port}",
                              "X-Lesson-New-Run": token}, '{"epochs": 1}', 403, "rebind.test"),
        "another site": ({"Origin": "http://evil.example", "X-Lesson-New-Run": token}, '{"epochs": 1}', 403, "origin"),
        "100,000 nested [": ({"X-Lesson-New-Run": token}, "[" * 100_000, 413, "at most"),
        "50,000 nested {": ({"X-Lesson-New-Run": token}, '{"a":' * 50_000, 413, "at most"),
        "3,000 nested [": ({"X-Lesson-New-Run": token}, "[" * 3_000, 400, "nests"),
    }
    for case, (headers, body, status, needle) in cases.items():
        code, answer, kind = post_raw("127.0.0.1", port, body.encode(), {"Host": local, **headers})
        assert (code, kind) == (status, "application/json") and needle in answer["error"], (case, answer)
        assert "\n" not in answer["error"]
    assert sorted(p.name for p in runs.iterdir()) == ["first-lesson"]     # nothing trained


def test_a_flood_of_new_runs_trains_one_and_says_the_bound(trainer):
    runs, port, token = trainer
    headers = {"Host": f"127.0.0.1:{port}", "X-Lesson-New-Run": token, "Content-Type": "application/json"}
    code, answer, _ = post_raw("127.0.0.1", port, b'{"epochs": 1}', headers)
    assert code == 200 and answer["exit_code"] == 0, answer
    for _ in range(6):
        code, refused, kind = post_raw("127.0.0.1", port, b'{"epochs": 1}', headers)
        assert (code, kind) == (429, "application/json") and "at most 1 runs from the tab in an hour" in refused["error"]
    assert sorted(p.name for p in runs.iterdir()) == sorted(["first-lesson", answer["run"]])


def non_loopback_address() -> str | None:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))        # no packet is sent: it only picks the outgoing interface
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_under_bind_all_a_peer_on_the_network_never_trains(written_run, tmp_path, monkeypatch):
    """--bind_all with NN_LESSON_NEW_RUN=on (the user's knowing choice): a request from this machine's network
    address, token and all, is refused; the same request over loopback reaches the settings."""
    import shutil
    import subprocess
    import sys
    from nn_lesson.lesson.board.serve import free_port, tensorboard_command
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no network address besides loopback")
    runs = tmp_path / "runs"
    shutil.copytree(written_run[0], runs / "first-lesson")
    port = free_port()
    command = tensorboard_command(runs, port)
    at = command.index("--host")
    command[at:at + 2] = ["--bind_all"]
    token = "a-token-for-this-test-alone-0123"
    env = {**__import__("os").environ, "NN_LESSON_TOKEN": token, "NN_LESSON_NEW_RUN": "on"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/data/runs"), bool)
        code, answer, _ = post_raw(address, port, b'{"epochs": 1}',
                                   {"Host": f"{address}:{port}", "X-Lesson-New-Run": token})
        assert code == 403 and address in answer["error"], answer
        code, answer, _ = post_raw("127.0.0.1", port, b'{"activation": "gelu"}',
                                   {"Host": f"127.0.0.1:{port}", "X-Lesson-New-Run": token})
        assert code == 400 and "one of" in answer["error"], answer
        assert sorted(p.name for p in runs.iterdir()) == ["first-lesson"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


FLOODING_SERVER = """
import http.server, pathlib, sys
for i in range(20000):  # ~2 MB of warnings on stderr before it answers: far past a pipe's 64 KiB
    sys.stderr.write(f"warning {i}: " + "x" * 90 + "\\n")
sys.stderr.flush()
root = pathlib.Path(sys.argv[2])
(root / "data").mkdir(exist_ok=True)
(root / "data" / "runs").write_text("[]")
handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""


def test_a_server_that_writes_much_to_stderr_keeps_answering(tmp_path, monkeypatch):
    """start_tensorboard reads the server's stderr all along (a pipe nobody reads blocks the writer at 64 KiB)."""
    from nn_lesson.lesson.board import serve
    script = tmp_path / "server.py"
    script.write_text(FLOODING_SERVER)
    monkeypatch.setattr(serve, "tensorboard_command",
                        lambda logdir, port: [sys.executable, str(script), str(port), str(logdir)])
    proc, url = serve.start_tensorboard(tmp_path, timeout=30, announce=False)
    try:
        assert b"warning 19999" in b"".join(proc.stderr_tail)
    finally:
        proc.kill()
        proc.wait()


def test_a_server_that_exits_at_once_says_its_last_line(tmp_path, monkeypatch):
    from nn_lesson.lesson.board import serve
    monkeypatch.setattr(serve, "tensorboard_command", lambda logdir, port: [
        sys.executable, "-c", "import sys; sys.stderr.write('noise\\nE: port taken\\n'); sys.exit(3)"])
    with pytest.raises(RuntimeError, match="exited with code 3: E: port taken"):
        serve.start_tensorboard(tmp_path, timeout=30, announce=False)
