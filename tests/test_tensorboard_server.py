"""A real `tensorboard` on 127.0.0.1 serves what the lesson wrote, through its HTTP API."""

import json
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
