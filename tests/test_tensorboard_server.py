"""A real `tensorboard` on 127.0.0.1 serves what the lesson wrote, through its HTTP API."""

import json
import time
import urllib.parse
import urllib.request

import pytest

from nn_lesson.lesson.board.serve import start_tensorboard
from nn_lesson.lesson.board.lesson_run import DIAGRAM_TAG, GRAPH_TAG

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
    for name in ("scalars", "histograms", "distributions", "images", "text", "graphs", "hparams", "custom_scalars"):
        assert plugins[name]["enabled"], name


def test_http_api_returns_every_kind(server):
    url, run = server
    loss = wait_for(lambda: get(url, "data/plugin/scalars/scalars", run=run, tag="1 loss/this step's students"),
                    lambda v: len(v) == 360)
    assert len(loss) == 360 and loss[0][1] == 0
    text = get(url, "data/plugin/text/text", run=run, tag="lesson/04 the network meets Sarah")
    assert "Sarah" in text[0]["text"] and "PASS confidence" in text[0]["text"]
    images = wait_for(lambda: get(url, "data/plugin/images/images", run=run, tag=DIAGRAM_TAG), lambda v: len(v) == 360)
    assert len(images) == 360  # the slider has every step (serve keeps all samples)
    png = get(url, "data/plugin/images/individualImage?" + images[5]["query"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    graph_png = get(url, "data/plugin/images/images", run=run, tag=GRAPH_TAG)
    assert len(graph_png) == 1
    hist = get(url, "data/plugin/histograms/histograms", run=run, tag="weights/hidden.weight")
    steps = [h[1] for h in hist]  # the histograms route samples the steps it returns
    assert len(steps) >= 50 and set(steps) <= set(range(360)) and steps[-1] == 359
    graph = get(url, "data/plugin/graphs/graph", run=run)
    assert b"hidden" in graph and b"output" in graph
    experiment = get(url, "data/plugin/hparams/experiment", body={"experimentName": ""})
    assert {h["name"] for h in experiment["hparamInfos"]} >= {"lr", "loss", "init", "epochs"}
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"hparams/final held-out loss"}
    layout = get(url, "data/plugin/custom_scalars/layout")
    assert any(c["title"] == "weights into PASS" for cat in layout["category"] for c in cat["chart"])
