"""Every answer of the Lesson tab is the answer the same request gets alone, whatever other requests run at
the same moment: real threads through TensorBoard's WSGI app (as its threaded server calls it), and a real
`tensorboard` on 127.0.0.1 over HTTP. The tab itself asks for a step and its decision map at once."""

import json
import shutil
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.plugins import base_plugin

from conftest import run_cli
from nn_lesson.lesson.board.plugin import LessonPlugin
from nn_lesson.lesson.board.serve import start_tensorboard
from nn_lesson.models import StudentNet


@pytest.fixture(scope="module")
def logdir(written_run, tmp_path_factory):
    """Two lesson runs whose numbers differ everywhere: the default one and lr 2, tanh, random init."""
    root = tmp_path_factory.mktemp("concurrency")
    runs = root / "runs"
    shutil.copytree(written_run[0], runs / "good")
    other = run_cli("--name", "other", "--logdir", str(runs), "--lr", "2", "--activation", "tanh",
                    "--init", "random", "--seed", "3", "--epochs", "10", "--quiet", cwd=root)
    assert other.returncode == 0, other.stderr
    return runs


def wsgi_app(logdir):
    return application.TensorBoardWSGI([LessonPlugin(base_plugin.TBContext(logdir=str(logdir)))])


def ask(app, path: str) -> tuple[int, bytes]:
    """One request on its own client (a werkzeug Client keeps cookies: one per request, one per thread)."""
    response = werkzeug_test.Client(app, wrappers.Response).get("/data/plugin/lesson/" + path)
    return response.status_code, response.get_data()


def requests_of(runs_steps) -> list[str]:
    paths = []
    for run, steps in runs_steps:
        paths.append(f"run?run={run}")
        for step in steps:
            paths += [f"step?run={run}&step={step}", f"decision_map?run={run}&step={step}",
                      f"decision_map?run={run}&step={step}&before=1"]
    return paths


PATHS = requests_of([("good", (0, 1, 25, 200, 359)), ("other", (0, 7, 30, 59))])


def test_two_evaluations_inside_the_network_at_once_each_get_their_own_weights(logdir, monkeypatch):
    """Forced, not hoped for: each request's first forward waits on a barrier until the other request is inside
    its forward too, so two evaluations of the same run's network overlap every time. Shared by both, the
    module's parameters are swapped by one under the other (step 25's loss_after read 1.84 instead of 0.0499);
    a lock around the evaluation would never let both in (the barrier breaks and the test says so)."""
    app = wsgi_app(logdir)
    alone = {p: ask(app, p) for p in ("step?run=good&step=25", "step?run=good&step=200",
                                      "decision_map?run=good&step=0", "decision_map?run=good&step=359")}
    assert all(status == 200 for status, _ in alone.values())
    barrier = threading.Barrier(2)
    first = threading.local()
    met = []
    forward = StudentNet.forward

    def meeting_forward(self, x):
        if not getattr(first, "done", False):
            first.done = True
            met.append(barrier.wait(timeout=20) is not None)   # BrokenBarrierError: the two never met
        return forward(self, x)
    monkeypatch.setattr(StudentNet, "forward", meeting_forward)
    for pair in (("step?run=good&step=25", "step?run=good&step=200"),
                 ("decision_map?run=good&step=0", "decision_map?run=good&step=359"),
                 ("step?run=good&step=25", "decision_map?run=good&step=359")):
        met.clear()

        def one(path):
            first.done = False
            return ask(app, path)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(one, pair))
        assert met == [True, True], "the two evaluations did not overlap"
        for path, answer in zip(pair, answers):
            assert answer == alone[path], path


def test_many_threads_on_every_route_each_answer_equals_the_answer_alone(logdir):
    app = wsgi_app(logdir)
    alone = {p: ask(app, p) for p in PATHS}
    assert all(status == 200 for status, _ in alone.values()), [p for p, (s, _) in alone.items() if s != 200]
    work = PATHS * 6
    start = threading.Barrier(16)

    def worker(k):
        start.wait(timeout=60)              # all 16 threads begin together
        return [(p, ask(app, p)) for p in work[k::16]]
    with ThreadPoolExecutor(16) as pool:
        answered = [pair for part in pool.map(worker, range(16)) for pair in part]
    wrong = [p for p, answer in answered if answer != alone[p]]
    assert len(answered) == len(work) and wrong == []


def test_a_real_tensorboard_answers_threads_as_it_answers_one(logdir):
    proc, url = start_tensorboard(logdir)
    try:
        def fetch(path):
            with urllib.request.urlopen(url + "data/plugin/lesson/" + path, timeout=120) as response:
                return response.status, response.read()
        alone = {p: fetch(p) for p in PATHS}
        start = threading.Barrier(8)

        def worker(k):
            start.wait(timeout=60)
            return [(p, fetch(p)) for p in (PATHS * 2)[k::8]]
        with ThreadPoolExecutor(8) as pool:
            answered = [pair for part in pool.map(worker, range(8)) for pair in part]
        wrong = [p for p, answer in answered if answer != alone[p]]
        assert len(answered) == 2 * len(PATHS) and wrong == []
        step = json.loads(alone["step?run=good&step=25"][1])
        assert step["loss_after"] < 0.1           # the measured wrong answer was 1.84
    finally:
        proc.terminate()
        proc.wait(timeout=20)
