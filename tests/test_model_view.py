"""Your own model in the Lesson tab as a picture of its health (lesson/board/model_view.py, static/model_view.js):
the /model_step route through TensorBoard's WSGI app, every number checked against the SnapshotLog computed here
independently, and the drawing in Debian's chromium against a real tensorboard at 1280x720."""

import math
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.plugins import base_plugin

from nn_lesson import Recorder, SnapshotLog, write_tensorboard
from nn_lesson.hooks import CapturePolicy
from nn_lesson.lesson.board.plugin import LessonPlugin

K = 3        # every number of every K-th step, statistics of every step
STEPS = 12


class Block(nn.Module):
    """A residual block: conv, BatchNorm, ReLU, conv, BatchNorm, the input added, ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.relu2(x + self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))


class SmallResNet(nn.Module):
    """stem (conv, BatchNorm, ReLU), layers (residual blocks), a pool and a linear head: a ResNet written the
    ordinary way, small."""

    def __init__(self, blocks: int = 3, c: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())
        self.layers = nn.Sequential(*[Block(c) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        return self.head(self.pool(self.layers(self.stem(x))).flatten(1))


def train(policy, steps: int = STEPS, lr: float = 0.1):
    torch.manual_seed(0)
    model = SmallResNet()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    with Recorder(model, opt, policy=policy) as rec:
        for i in range(steps):
            xb, yb = x[i % 4 * 16:(i % 4 + 1) * 16], y[i % 4 * 16:(i % 4 + 1) * 16]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return rec


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """runs/resnet (every number every 3rd step, statistics every step), runs/stats-only (statistics alone),
    runs/broken-stats (a statistics.npz that is not one)."""
    runs = tmp_path_factory.mktemp("model-view") / "runs"
    rec = train(CapturePolicy.stats_and_every(K))
    write_tensorboard(rec.log, runs / "resnet", stats=rec.stats_log)
    write_tensorboard(train(CapturePolicy.stats()).log, runs / "stats-only")
    broken = write_tensorboard(rec.log, runs / "broken-stats")
    (broken / "statistics.npz").write_bytes(b"not a snapshot file")
    hot = train(CapturePolicy.stats_and_every(K), lr=0.8)          # the same net at a learning rate 8x higher
    write_tensorboard(hot.log, runs / "resnet-hot", stats=hot.stats_log)
    linked = write_tensorboard(rec.log, runs / "linked-stats")     # statistics.npz a link to a real one
    (linked / "statistics.npz").symlink_to(runs / "resnet" / "statistics.npz")
    return runs


@pytest.fixture(scope="module")
def logs(logdir):
    return {"full": SnapshotLog.load(logdir / "resnet" / "snapshots.npz"),
            "stats": SnapshotLog.load(logdir / "resnet" / "statistics.npz"),
            "only": SnapshotLog.load(logdir / "stats-only" / "snapshots.npz")}


@pytest.fixture(scope="module")
def client(logdir):
    app = application.TensorBoardWSGI([LessonPlugin(base_plugin.TBContext(logdir=str(logdir)))])
    return werkzeug_test.Client(app, wrappers.Response)


def model_step(client, run, step, **more):
    response = client.get("/data/plugin/lesson/model_step", query_string={"run": run, "step": str(step), **more})
    return response.status_code, response.get_json(silent=True)


def std(t):
    return float(t.double().flatten().std(correction=0))


# ---- the JSON ----
def test_blocks_in_the_models_order_grouped_by_parent(client, logs):
    status, view = model_step(client, "resnet", 0)
    assert status == 200, view
    assert [g["name"] for g in view["groups"]] == ["stem", "layers.0", "layers.1", "layers.2", "pool", "head"]
    assert [b["name"] for b in view["blocks"]] == logs["full"].layers
    assert view["groups"][1]["blocks"] == [f"layers.0.{m}" for m in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2")]
    assert view["statistics"] == "statistics.npz" and view["rule"] == 1e-3
    assert (view["rows"], view["statistics_steps"]) == (len(logs["full"]), STEPS)   # every number only every K-th
    types = {b["name"]: b["type"] for b in view["blocks"]}           # each layer's class, as the Recorder saw it
    assert (types["stem.0"], types["stem.1"], types["layers.0.relu1"]) == ("Conv2d", "BatchNorm2d", "ReLU")


@pytest.mark.parametrize("row", [0, 2, 3])
def test_health_numbers_are_the_runs_own(client, logs, row):
    log = logs["full"]
    snap = log[row]
    status, view = model_step(client, "resnet", row)
    assert status == 200 and view["step"] == snap.step == row * K and view["full_row"]
    blocks = {b["name"]: b for b in view["blocks"]}
    for name in ("stem.0", "layers.1.conv2", "layers.2.bn1", "head"):
        weight = f"{name}.weight"
        b = blocks[name]
        assert b["main"] == weight and b["source"] == "full"
        assert b["grad_norm"] == pytest.approx(float(snap.grads[weight].double().norm()), rel=1e-9)
        if std(snap.before[weight]) == 0:       # BatchNorm's weight starts all ones: no ratio to a spread of 0
            assert b["ratio"] is None and b["bins"]["ratio"] is None
            assert "all equal at this step" in b["ratio_note"]      # and the block says why, in words
            continue
        assert b["ratio_note"] is None
        ratio = std(snap.after[weight].double() - snap.before[weight].double()) / std(snap.before[weight])
        assert b["ratio"] == pytest.approx(ratio, rel=1e-9)
        assert b["grad_norm"] == pytest.approx(float(snap.grads[weight].double().norm()), rel=1e-9)
        g = snap.grads[weight].double()
        assert b["hist_weight_grad"]["counts"] == pytest.approx(
            torch.histc(g, 16, float(g.min()), float(g.max())).tolist())
        assert b["bins"]["ratio"] == min(7, max(0, math.floor((math.log10(ratio) + 5) / 4 * 8)))
    for name in ("stem.2", "layers.0.relu1", "layers.2.relu2"):
        act = snap.activations[name]
        assert blocks[name]["dead_kind"] == "dead"
        assert blocks[name]["dead"] == pytest.approx(float((act == 0).double().mean()))
        assert 0 < blocks[name]["dead"] < 1                       # ReLUs that are partly dead at this step
        assert blocks[name]["bins"]["dead"] == min(7, math.floor(blocks[name]["dead"] * 8))
        assert blocks[name]["hist_act"]["counts"] == pytest.approx(
            torch.histc(act.double(), 16, float(act.min()), float(act.max())).tolist())
        ag = snap.act_grads[name].double()
        assert blocks[name]["hist_act_grad"]["counts"] == pytest.approx(
            torch.histc(ag, 16, float(ag.min()), float(ag.max())).tolist())
        assert blocks[name]["ratio"] is None                      # no weights of its own
    assert blocks["head"]["dead"] is None and "weights" in blocks["head"]["dead_note"]


def test_the_update_ratio_over_every_step_comes_from_the_statistics(client, logs):
    stats = logs["stats"]
    _, view = model_step(client, "resnet", 1)
    series = view["series"]
    assert series["steps"] == list(range(STEPS))                  # every step, not only the full rows
    layers = {l["name"]: l for l in series["layers"]}
    assert "layers.0.bn1" not in layers and list(layers)[0] == "stem.0"   # weights of 2 or more dimensions
    for name in ("stem.0", "layers.1.conv1", "head"):
        expected = (stats.stat(f"{name}.weight:update", "std") / stats.stat(f"{name}.weight:value", "std")).double()
        assert layers[name]["log10"] == pytest.approx(torch.log10(expected).tolist(), rel=1e-9)
    # at a full row the ratio from every number agrees with the statistics' (float32 statistics)
    full = {b["name"]: b["ratio"] for b in view["blocks"]}
    assert 10 ** layers["head"]["log10"][K] == pytest.approx(full["head"], rel=1e-4)
    # one gradient-norm scale for every step: it holds every step's norm
    lo, hi = view["scale"]["grad_norm"]["log10"]
    norms = torch.cat([stats.stat(f"{p}:grad", "norm") for p in logs["full"].param_names
                       if p.endswith("weight") and len(logs["full"].slot(p).shape) >= 2])
    assert lo <= math.log10(float(norms.min())) + 1e-9 and math.log10(float(norms.max())) <= hi + 1e-9


def test_a_statistics_only_run_has_ratios_and_histograms_but_no_dead_share(client, logs):
    log = logs["only"]
    status, view = model_step(client, "stats-only", 5)
    assert status == 200 and not view["full_row"] and view["statistics"] == "snapshots.npz"
    snap = log[5]
    blocks = {b["name"]: b for b in view["blocks"]}
    conv = blocks["layers.1.conv1"]
    assert conv["source"] == "statistics"
    assert conv["ratio"] == pytest.approx(snap.stats["layers.1.conv1.weight:update"]["std"]
                                          / snap.stats["layers.1.conv1.weight:value"]["std"], rel=1e-9)
    assert conv["grad_norm"] == pytest.approx(snap.stats["layers.1.conv1.weight:grad"]["norm"], rel=1e-9)
    relu = blocks["layers.1.relu1"]
    assert relu["dead"] is None and "statistics only" in relu["dead_note"]
    assert relu["hist_act"]["counts"] == pytest.approx(snap.stats["act:layers.1.relu1"]["hist"].tolist())
    assert len(view["series"]["steps"]) == STEPS


def test_a_broken_statistics_file_leaves_the_full_rows(client, logs):
    status, view = model_step(client, "broken-stats", 1)
    assert status == 200 and view["statistics"] is None
    assert view["series"]["steps"] == logs["full"].step.tolist()        # the full rows' steps
    assert {b["name"]: b for b in view["blocks"]}["head"]["ratio"] is not None


def test_statistics_reached_through_a_link_are_not_read(client, logs):
    """statistics.npz is opened as every file the tab reads (safe_open): a symbolic link there, even to a real
    statistics file inside the logdir, is not followed; the view stands on the full rows."""
    status, view = model_step(client, "linked-stats", 1)
    assert status == 200 and view["statistics"] is None
    assert view["series"]["steps"] == logs["full"].step.tolist()


def test_vs_puts_two_runs_on_one_gradient_norm_scale(client):
    """model_step ...&with=R2: the gradient norm's colour scale spans both runs' norms of every step, the same in
    both answers, and each block's bin is its own norm's bin on that scale; the ratio's scale is fixed."""
    _, alone = model_step(client, "resnet", 1)
    _, hot_alone = model_step(client, "resnet-hot", 1)
    status, mine = model_step(client, "resnet", 1, **{"with": "resnet-hot"})
    status2, theirs = model_step(client, "resnet-hot", 1, **{"with": "resnet"})
    assert status == status2 == 200
    a, b = alone["scale"]["grad_norm"]["log10"], hot_alone["scale"]["grad_norm"]["log10"]
    assert a != b                                                  # two runs, two ranges of norms
    both = [min(a[0], b[0]), max(a[1], b[1])]
    assert mine["scale"]["grad_norm"]["log10"] == theirs["scale"]["grad_norm"]["log10"] == both
    assert mine["scale"]["ratio"] == alone["scale"]["ratio"]
    for view in (mine, theirs):
        for block in view["blocks"]:
            if block["grad_norm"] is None:
                continue
            at = (math.log10(block["grad_norm"]) - both[0]) / (both[1] - both[0])
            assert block["bins"]["grad_norm"] == min(7, max(0, math.floor(at * 8))), block["name"]
    assert model_step(client, "resnet", 1, **{"with": "../x"})[0] == 400
    assert "no run" in model_step(client, "resnet", 1, **{"with": "nothing-here"})[1]["error"]


def test_the_ratio_over_every_step_is_left_out_when_asked(client):
    """series=0: the tab has the ratio over every step of a run already (it is the same at every step)."""
    _, whole = model_step(client, "resnet", 2)
    status, lean = model_step(client, "resnet", 2, series="0")
    assert status == 200 and lean["series"] is None and whole["series"]["steps"]
    assert {k: v for k, v in lean.items() if k != "series"} == {k: v for k, v in whole.items() if k != "series"}


def test_a_folded_group_takes_its_worst_block(client, logs):
    """Each group names, for each measure, the block a folded row is coloured by: the ratio farthest from 1e-3 on
    log10, the largest gradient norm, the largest dead share; computed here from the log."""
    snap = logs["full"][2]
    _, view = model_step(client, "resnet", 2)
    assert view["worst_rule"]["ratio"] == "the update ratio farthest from 1e-3"
    groups = {g["name"]: g for g in view["groups"]}
    layer = [f"layers.1.{m}" for m in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2")]
    ratios, norms = {}, {}
    for name in layer:
        w = f"{name}.weight"
        if w in snap.before:
            norms[name] = float(snap.grads[w].double().norm())
            if std(snap.before[w]) > 0:
                ratios[name] = std(snap.after[w].double() - snap.before[w].double()) / std(snap.before[w])
    far = max(ratios, key=lambda n: abs(math.log10(ratios[n]) + 3))
    worst = groups["layers.1"]["worst"]
    assert worst["ratio"]["block"] == far and worst["ratio"]["value"] == pytest.approx(ratios[far], rel=1e-9)
    assert worst["grad_norm"]["block"] == max(norms, key=norms.get)
    dead = {n: float((snap.activations[n] == 0).double().mean()) for n in ("layers.1.relu1", "layers.1.relu2")}
    assert worst["dead"]["block"] == max(dead, key=dead.get)
    assert worst["dead"]["bin"] == min(7, math.floor(max(dead.values()) * 8))
    blocks = {b["name"]: b for b in view["blocks"]}
    assert worst["ratio"]["bin"] == blocks[far]["bins"]["ratio"]
    assert groups["pool"]["worst"]["ratio"] is None                # no weights in it: nothing to colour by


@pytest.mark.parametrize("args, needle", [
    ({"run": "resnet"}, "missing argument 'step'"),
    ({"run": "resnet", "step": "99"}, "out of range"),
    ({"run": "resnet", "step": "-1"}, "not a row number"),
    ({"run": "../resnet", "step": "0"}, "'..' is refused"),
    ({"run": "nothing-here", "step": "0"}, "no run"),
    ({"step": "0"}, "missing argument 'run'"),
])
def test_bad_requests_are_400_json(client, args, needle):
    response = client.get("/data/plugin/lesson/model_step", query_string=args)
    assert response.status_code == 400 and needle in response.get_json()["error"]


def test_the_front_end_module_is_served(client):
    response = client.get("/data/plugin/lesson/model_view.js")
    assert response.status_code == 200 and "export function drawModelView" in response.get_data(as_text=True)
    assert "./model_view.js" in client.get("/data/plugin/lesson/index.js").get_data(as_text=True)


# ---- in a browser: Debian's chromium, a real tensorboard ----
WAIT = 60000
LESSON_PANELS = ("network-panel", "curve-panel", "students-panel", "decision", "page-panel")
MODEL_PANELS = ("mv-blocks-panel", "mv-detail-panel", "mv-series-panel")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import need_program
    from nn_lesson.lesson.board.serve import start_tensorboard
    need_program("chromium")
    runs = tmp_path_factory.mktemp("model-view-browser") / "runs"
    rec = train(CapturePolicy.stats_and_every(K))
    write_tensorboard(rec.log, runs / "resnet", stats=rec.stats_log)
    hot = train(CapturePolicy.stats_and_every(K), lr=0.8)
    write_tensorboard(hot.log, runs / "resnet-hot", stats=hot.stats_log)
    write_tensorboard(train(CapturePolicy.every_k(4)).log, runs / "resnet-every-4")   # steps 0, 4, 8
    proc, url = start_tensorboard(runs)
    yield url, SnapshotLog.load(runs / "resnet" / "snapshots.npz"), runs
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    from conftest import chromium_page
    with chromium_page() as page:
        yield page


LAYOUT_JS = """(body, ids) => {
    const problems = [], W = window.innerWidth, H = window.innerHeight;
    const shown = (n) => { const b = n.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
    const box = (n) => n.getBoundingClientRect();
    const name = (n) => (n.id ? '#' + n.id : n.tagName.toLowerCase()) + ' "' + (n.textContent || '').trim().slice(0, 30) + '"';
    const panels = ids.map((id) => document.getElementById(id));
    for (const p of panels) {
        if (!p || !shown(p)) { problems.push('not shown: ' + (p ? p.id : '?')); continue; }
        const pb = box(p);
        if (pb.left < -1 || pb.right > W + 1 || pb.top < -1 || pb.bottom > H + 1) problems.push('off screen: ' + p.id);
        const scrolls = getComputedStyle(p).overflowY === 'auto' || getComputedStyle(p).overflowY === 'scroll';
        for (const n of p.querySelectorAll('*')) {
            if (!shown(n) || n.closest('title')) continue;
            const b = box(n);
            if (b.left < pb.left - 1 || b.right > pb.right + 1) problems.push('outside its panel (x): ' + name(n) + ' in ' + p.id);
            if (!scrolls && (b.top < pb.top - 1 || b.bottom > pb.bottom + 1)) problems.push('outside its panel (y): ' + name(n) + ' in ' + p.id);
        }
    }
    panels.forEach((a, i) => panels.slice(i + 1).forEach((b) => {
        const x = box(a), y = box(b);
        if (x.left < y.right - 1 && y.left < x.right - 1 && x.top < y.bottom - 1 && y.top < x.bottom - 1) problems.push('panels overlap: ' + a.id + ' ' + b.id);
    }));
    for (const s of document.querySelectorAll('#model-view svg')) {
        if (!shown(s)) continue;
        const sb = box(s);
        const texts = [...s.querySelectorAll('text')].filter((t) => shown(t) && t.textContent.trim());
        for (const t of texts) {
            const b = box(t);
            if (b.left < sb.left - 1 || b.right > sb.right + 1 || b.top < sb.top - 1 || b.bottom > sb.bottom + 1) problems.push('text cut by its drawing: ' + name(t));
        }
        texts.forEach((a, i) => texts.slice(i + 1).forEach((c) => {
            const x = box(a), y = box(c);
            const w = Math.min(x.right, y.right) - Math.max(x.left, y.left), h = Math.min(x.bottom, y.bottom) - Math.max(x.top, y.top);
            if (w > 1 && h > 1) problems.push('text overlaps text: ' + name(a) + ' / ' + name(c));
        }));
    }
    for (const r of document.querySelectorAll('#mv-blocks svg text')) {   // a block's name inside its block
        const t = box(r);
        const under = [...r.ownerSVGElement.querySelectorAll('rect.block')].filter((b) => {
            const q = box(b); return t.left >= q.left - 1 && t.right <= q.right + 1 && t.top >= q.top - 1 && t.bottom <= q.bottom + 1; });
        const group = r.getAttribute('class') === 'group';
        if (!group && !under.length) problems.push('block name outside its block: ' + name(r));
    }
    return problems; }"""


SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """The README's pictures (model-view-*.png) go to docs/screenshots/ when NN_LESSON_README_SHOTS is set."""
    if os.environ.get("NN_LESSON_README_SHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        return SHOTS / name
    return tmp_path / name


def wait_blocks(frame, step: int):
    frame.locator(f'#mv-blocks-svg[data-step="{step}"]').wait_for(timeout=WAIT)
    frame.locator("#step-number").filter(has_text=re.compile(rf"^{step}$")).wait_for(timeout=WAIT)


@pytest.mark.browser
def test_the_model_view_of_a_resnet_fits_1280x720_and_shows_no_lesson_panel(page, server, tmp_path):
    from nn_lesson.lesson.board.model_view import COLOURS
    url, log, _ = server
    page.goto(url + "#lesson&run=resnet")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 0)
    blocks = frame.locator("#mv-blocks-svg rect.block")
    assert blocks.count() == len(log.layers)
    assert frame.locator("#mv-blocks-svg text.group").all_text_contents() == [
        "▾ " + g for g in ("stem", "layers.0", "layers.1", "layers.2", "pool", "head")]
    for panel in LESSON_PANELS:                                   # no student, decision-map or story panel
        assert not frame.locator(f"#{panel}").is_visible(), panel
    assert frame.locator("#mv-rule").count() == 1 and frame.locator("#mv-series-svg path").count() == 8
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    assert f"kept at {len(log)} of {STEPS} steps" in frame.locator("#message").text_content()
    labels = frame.locator("#mv-blocks-svg text").all_text_contents()
    assert labels[labels.index("▾ stem") + 1:][:3] == ["Conv2d", "BatchNorm2d", "ReLU"], labels  # not "0", "1", "2"

    # a block's colour is the palette's colour of the ratio's bin at this step, computed here from the log
    snap = log[0]
    rect = frame.locator('#mv-blocks-svg rect.block[data-name="layers.1.conv1"]')
    w = "layers.1.conv1.weight"
    ratio = std(snap.after[w].double() - snap.before[w].double()) / std(snap.before[w])
    expected = min(COLOURS - 1, max(0, math.floor((math.log10(ratio) + 5) / 4 * COLOURS)))
    assert rect.get_attribute("data-bin") == str(expected)
    source = (Path(__file__).parent.parent / "lesson" / "board" / "static" / "model_view.js").read_text()
    palette = re.findall(r"'(#[0-9a-f]{6})'", re.search(r"PALETTE = \[(.*?)\]", source).group(1))
    assert len(palette) == COLOURS and rect.get_attribute("fill") == palette[expected]

    # the step moves: the blocks are drawn for the new step, and a click shows a block's numbers
    frame.locator("#next").click()
    wait_blocks(frame, K)
    frame.locator('#mv-blocks-svg rect.block[data-name="layers.2.relu1"]').click()
    frame.locator("#mv-detail-title").filter(has_text="layers.2.relu1 at step 3").wait_for(timeout=WAIT)
    dead = float(((log[1].activations["layers.2.relu1"] == 0).double().mean()))
    assert f"{100 * dead:.1f} %" in frame.locator("#mv-numbers").text_content()
    frame.locator("#mv-measure-dead").click()
    frame.locator('#mv-blocks-svg[data-measure="dead"]').wait_for(timeout=WAIT)
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    shot = screenshot_path(tmp_path, "model-view-resnet.png")
    frame.locator("#mv-measure-ratio").click()
    frame.locator('#mv-blocks-svg[data-measure="ratio"]').wait_for(timeout=WAIT)
    frame.locator('#mv-blocks-svg rect.block[data-name="layers.1.conv1"]').click()
    frame.locator("#mv-detail-title").filter(has_text="layers.1.conv1 at step 3").wait_for(timeout=WAIT)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10000


def hash_of(page) -> dict:
    """The address's view: TensorBoard's page holds it after '#lesson&'."""
    from urllib.parse import parse_qsl
    return dict(parse_qsl(page.url.split("#", 1)[1].split("&", 1)[1]))


def grad_norm_bin(norm: float, logs: list) -> int:
    """The colour bin of a gradient norm on the log scale over every step's weight-gradient norms of `logs`
    (statistics of every step), computed here from the logs themselves."""
    from nn_lesson.lesson.board.model_view import COLOURS
    norms = torch.cat([st.stat(f"{p}:grad", "norm") for st in logs for p in st.param_names if p.endswith(".weight")])
    lo, hi = math.log10(float(norms.min())), math.log10(float(norms.max()))
    return min(COLOURS - 1, max(0, math.floor((math.log10(norm) - lo) / (hi - lo) * COLOURS)))


@pytest.mark.browser
def test_vs_two_model_runs_on_one_scale_steps_plays_and_the_address_keeps_the_view(page, server, tmp_path):
    """vs with two ResNet runs (lr 0.1 and 0.8): both pictures inside 1280x720 with no text over text, one gradient-
    norm scale (a block's bin in each picture computed here from both runs' statistics), the slider and play move
    both; a folded row takes its worst block's colour; run, step, measure, open block, folds and the compared run
    come back after a reload."""
    url, log, runs = server
    page.goto("about:blank")                                     # a fresh load, not a change of the hash
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/model_step?" in r.url else None)
    page.goto(url + "#lesson&run=resnet")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 0)
    line = frame.locator("#line").inner_text().strip()
    assert line.startswith("step 0") and not line.endswith("·"), line          # no stray separator at its end
    frame.locator("#compare").select_option("resnet-hot")
    frame.locator('#mv-blocks-svg-compare[data-step="0"]').wait_for(timeout=WAIT)
    assert frame.locator("#mv-blocks-svg-compare rect.block").count() == len(log.layers)
    titles = frame.locator(".mv-picture-title").all_text_contents()
    assert titles[0].startswith("resnet · loss ") and titles[1].startswith("resnet-hot · loss ")
    assert float(titles[0].split("loss ")[1]) == pytest.approx(float(log.loss[0]), rel=2e-3)
    header = frame.locator("#mv-numbers tr").first.locator("th").all_text_contents()
    assert header == ["", "resnet", "resnet-hot"]
    # the ratio over the steps: the second run's 8 weights dashed beside the first's
    assert frame.locator('#mv-series-svg path[data-run="run"]').count() == 8
    assert frame.locator('#mv-series-svg path[data-run="compare"][stroke-dasharray]').count() == 8
    assert "dashed: resnet-hot" in frame.locator("#mv-series-key").text_content()
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems

    # one scale: the gradient norm's colour of the same block in both pictures, from both runs' statistics
    frame.locator("#mv-measure-grad_norm").click()
    frame.locator('#mv-blocks-svg-compare[data-measure="grad_norm"]').wait_for(timeout=WAIT)
    stats = [SnapshotLog.load(p) for p in sorted(runs.glob("resnet*/statistics.npz"))]
    assert len(stats) == 2
    for svg_id, st in (("mv-blocks-svg", stats[0]), ("mv-blocks-svg-compare", stats[1])):
        for name in ("stem.0", "layers.2.conv2", "head"):
            norm = float(st.stat(f"{name}.weight:grad", "norm")[0])
            rect = frame.locator(f'#{svg_id} rect.block[data-name="{name}"]')
            assert rect.get_attribute("data-bin") == str(grad_norm_bin(norm, stats)), (svg_id, name)

    # the slider's ▶ and play move both pictures (the ratio over the steps, asked once a run, stays drawn)
    frame.locator("#next").click()
    wait_blocks(frame, K)
    frame.locator(f'#mv-blocks-svg-compare[data-step="{K}"]').wait_for(timeout=WAIT)
    assert frame.locator('#mv-series-svg path[data-run="run"]').count() == 8
    assert frame.locator('#mv-series-svg path[data-run="compare"]').count() == 8
    later = [u for u in asked if "step=1&" in u]
    assert later and all("series=0" in u for u in later), later   # the series is asked once a run
    frame.locator("#play").click()
    last = int(log.step[-1])
    wait_blocks(frame, last)
    frame.locator(f'#mv-blocks-svg-compare[data-step="{last}"]').wait_for(timeout=WAIT)
    frame.locator("#play").filter(has_text="play").wait_for(timeout=WAIT)   # stopped at the last step

    # fold a row: one block, coloured by the worst block the server names, the legend says which
    frame.locator('#mv-blocks-svg text.group[data-group="2"]').click()
    folded = frame.locator('#mv-blocks-svg rect.folded[data-group="2"]')
    folded.wait_for(timeout=WAIT)
    worst = folded.get_attribute("data-worst")
    assert worst.startswith("layers.1.")
    source = (Path(__file__).parent.parent / "lesson" / "board" / "static" / "model_view.js").read_text()
    palette = re.findall(r"'(#[0-9a-f]{6})'", re.search(r"PALETTE = \[(.*?)\]", source).group(1))
    assert folded.get_attribute("fill") == palette[int(folded.get_attribute("data-bin"))]
    assert "its worst block, the largest gradient norm" in frame.locator("#mv-legend-fold").text_content()
    assert frame.locator('#mv-blocks-svg rect.block[data-name^="layers.1."]').count() == 0

    # pick a block and a measure; the address keeps it all, and a reload opens the same view
    frame.locator('#mv-blocks-svg rect.block[data-name="layers.2.relu1"]').click()
    frame.locator("#mv-measure-dead").click()
    frame.locator('#mv-blocks-svg[data-measure="dead"]').wait_for(timeout=WAIT)
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    page.screenshot(path=str(screenshot_path(tmp_path, "model-view-vs.png")))
    want = {"run": "resnet", "step": str(len(log) - 1), "measure": "dead", "block": "layers.2.relu1", "fold": "2",
            "compare": "resnet-hot"}
    page.wait_for_function("(want) => want.every((kv) => location.hash.includes(kv))",
                           arg=[f"{k}={v}" for k, v in want.items() if k not in ("block",)], timeout=WAIT)
    assert {k: hash_of(page).get(k) for k in want} == want
    page.reload()
    frame = page.frame_locator("iframe")
    wait_blocks(frame, last)
    frame.locator(f'#mv-blocks-svg-compare[data-step="{last}"]').wait_for(timeout=WAIT)
    assert frame.locator("#mv-blocks-svg").get_attribute("data-measure") == "dead"
    assert frame.locator("#mv-detail-title").text_content() == f"layers.2.relu1 at step {last}"
    assert frame.locator('#mv-blocks-svg rect.folded[data-group="2"]').count() == 1
    assert frame.locator("#compare").input_value() == "resnet-hot"
    # a run that kept other steps: matched by step number, and said so where it has none
    frame.locator("#compare").select_option("resnet-every-4")
    frame.locator("#mv-compare-note").filter(has_text=f"resnet-every-4 has no recorded step {last}").wait_for(timeout=WAIT)
    assert frame.locator("#mv-blocks-svg-compare").count() == 0
    frame.locator("#prev").click()                                 # step 6: none either; step 3 ... step 0: both
    frame.locator("#prev").click()
    frame.locator("#prev").click()
    wait_blocks(frame, 0)
    frame.locator('#mv-blocks-svg-compare[data-step="0"]').wait_for(timeout=WAIT)
    # the other model runs, never the run on screen itself
    assert frame.locator("#compare option").all_text_contents() == ["nothing", "resnet-every-4", "resnet-hot"]


@pytest.mark.browser
def test_switching_model_runs_keeps_the_training_step_not_the_row(page, server):
    """resnet keeps every 3rd step (0, 3, 6, 9), resnet-every-4 every 4th (0, 4, 8): from step 9 (row 3) the switch
    opens step 8 (its row 2), the last it kept at or before 9, not row 3 (which it does not have)."""
    url, _, _ = server
    page.goto("about:blank")                     # a fresh load: the page may be on this address already
    page.goto(url + "#lesson&run=resnet&step=3")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 9)
    frame.locator("#run").select_option("resnet-every-4")
    wait_blocks(frame, 8)
    frame.locator("#run").select_option("resnet")
    wait_blocks(frame, 6)
