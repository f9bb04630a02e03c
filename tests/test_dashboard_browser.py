"""Headless Chromium (Debian's, driven by playwright) opens the real dashboard against a real `tensorboard` and
checks what a learner and a teacher see: the run's own numbers on screen, never a blank page that passes.

The classroom logdir holds a bridge run that sorts first, the default lesson and an lr 5 lesson. Tests wait on
conditions (a run's number appearing), never on the clock. With NN_LESSON_README_SHOTS=1 the screenshots go to
docs/screenshots/, where the README shows them."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from conftest import need_program, run_cli
from nn_lesson.lesson.board.serve import start_tensorboard
from nn_lesson.lesson.run.record import RunRecord

pytestmark = pytest.mark.browser

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
DASHBOARDS = {  # dashboard -> a text only our runs put on it
    "timeseries": "1 loss", "scalars": "1 loss", "custom_scalars": "size of each parameter",
    "images": "0 the network", "text": "lesson/01", "graphs": "Main Graph", "hparams": "first-lesson",
    "lesson": "decision map after step"}
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
WAIT = 60000  # ms: a condition that has not appeared by then is a failure


def screenshot_path(tmp_path: Path, name: str) -> Path:
    """The README's pictures (lesson-tab-*.png) go to docs/screenshots/ when NN_LESSON_README_SHOTS is set."""
    if os.environ.get("NN_LESSON_README_SHOTS") and name.startswith("lesson-tab"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        return SHOTS / name
    return tmp_path / name


@pytest.fixture(scope="module")
def classroom(written_run, tmp_path_factory):
    """runs/a-bridge (sorts first), runs/first-lesson (the CLI's default run), runs/lr5 (written last)."""
    root = tmp_path_factory.mktemp("classroom")
    runs = root / "runs"
    bridge = subprocess.run([sys.executable, "-m", "nn_lesson", "bridge", "--epochs", "1", "--name", "a-bridge",
                             "--quiet", "--logdir", str(runs)], cwd=root, capture_output=True, text=True, timeout=600)
    assert bridge.returncode == 0, bridge.stderr
    shutil.copytree(written_run[0], runs / "first-lesson")
    fast = run_cli("--lr", "5", "--name", "lr5", "--quiet", "--logdir", str(runs), cwd=root)
    assert fast.returncode == 0, fast.stderr
    return runs


TOKEN = "the-browser-tests-own-token-0123"   # "+ run" needs the token that start_tensorboard printed


@pytest.fixture(scope="module")
def server(classroom):
    need_program("chromium")
    proc, url = start_tensorboard(classroom, token=TOKEN)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings playwright")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=need_program("chromium"), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def records(classroom):
    return {name: RunRecord.load(classroom / name / "snapshots.npz") for name in ("first-lesson", "lr5")}


def open_tab(page, url: str, hash_args: str = ""):
    """A fresh load of the tab at this hash, as a reload or a shared link gives it."""
    page.goto("about:blank")
    page.goto(url + "#lesson" + ("&" + hash_args if hash_args else ""))
    frame = page.frame_locator("iframe")                     # a dynamic plugin runs in an iframe
    frame.locator("#network-svg").wait_for(timeout=WAIT)
    return frame


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def wait_until(condition, what: str, limit: float = 180):
    """Poll `condition` until it holds; `limit` seconds only bound a failure, the test decides on the event."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {limit} s: {what}"
        time.sleep(0.2)


def wait_step(frame, step: int):
    frame.locator("#step-number").filter(has_text=re.compile(rf"^{step}$")).wait_for(timeout=WAIT)
    frame.locator(f'#network-svg[data-step="{step}"]').wait_for(timeout=WAIT)


# ---- the Lesson tab ----
def test_tab_opens_on_the_newest_lesson_run_when_a_bridge_run_sorts_first(page, server, records):
    frame = open_tab(page, server)
    assert frame.locator("#run").input_value() == "lr5"      # not a-bridge, the alphabetically first
    record = records["lr5"]
    assert frame.locator("#step-count").inner_text() == str(len(record.log))
    assert float(frame.locator("#loss").get_attribute("data-value")) == record.log[0].loss


def test_a_hover_never_outlives_its_step(page, server, records):
    """Hover a weight at step 100, go back to step 0 and press → three times: step 3, and nothing on screen
    names another step (the weight panel cleared, the hint back)."""
    record = records["first-lesson"]
    frame = open_tab(page, server, "run=first-lesson&step=100&mode=free")
    wait_step(frame, 100)
    frame.locator('#network-svg line.edge[data-param="hidden.weight"][data-i="2"][data-j="0"]').hover(force=True)
    frame.locator("#weight").filter(has_text="at step 100").wait_for(timeout=WAIT)
    after = float(record.log[100].after["hidden.weight"][2, 0])
    assert "studied→h3" in frame.locator("#weight").inner_text()
    assert f"{after:+.6f}".replace("-", "−") in frame.locator("#weight").inner_text()
    frame.locator("#slider").fill("0")
    wait_step(frame, 0)
    for _ in range(3):
        frame.locator("body").press("ArrowRight")
    wait_step(frame, 3)
    frame.locator("#decision-svg").wait_for(timeout=WAIT)
    frame.locator("#decision h3").filter(has_text="after step 3").wait_for(timeout=WAIT)
    text = frame.locator("body").inner_text()
    assert set(re.findall(r"\bstep (\d+)", text)) == {"3"}, re.findall(r".{30}\bstep \d+", text)
    page.mouse.move(1, 700)                                   # the pointer leaves the lines: the hint is back
    frame.locator("#hint").wait_for(state="visible", timeout=WAIT)
    assert not frame.locator("#weight").is_visible()
    assert float(frame.locator("#loss").get_attribute("data-value")) == record.log[3].loss
    assert record.students_of(3)[0] in frame.locator("#students-table").inner_text()


def test_four_panels_fit_a_projector_at_1280x720(page, server, tmp_path):
    frame = open_tab(page, server, "run=first-lesson&step=0&mode=free&view=after")
    frame.locator("#decision-svg").wait_for(timeout=WAIT)
    for panel in ("#network-panel", "#students-panel", "#curve-panel", "#decision"):
        box = frame.locator(panel).bounding_box()
        assert box and box["x"] >= 0 and box["y"] >= 0, panel
        assert box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 720, (panel, box)
    # Text at least 16 px as drawn: HTML by its computed size, SVG text by its size times the SVG's scale.
    sizes = frame.locator("body").evaluate("""() => {
        const out = [];
        for (const t of document.querySelectorAll('svg text')) {
            out.push([t.textContent, parseFloat(t.getAttribute('font-size')) * t.getScreenCTM().a]);
        }
        for (const n of document.querySelectorAll('#bar button, #line, #students-table td, #decision h3, #hint')) {
            out.push([n.textContent.slice(0, 20), parseFloat(getComputedStyle(n).fontSize)]);
        }
        return out; }""")
    small = [(text, round(size, 1)) for text, size in sizes if size < 15.5]
    assert not small, small
    page.screenshot(path=str(screenshot_path(tmp_path, "lesson-tab-1280x720.png")))


def test_the_story_page_sits_beside_the_network_at_1280x720(page, server, tmp_path):
    """In story mode the page is the point: its text starts on screen, beside the network."""
    frame = open_tab(page, server, "run=first-lesson&mode=story&page=5")
    frame.locator("#page-title").filter(has_text="05").wait_for(timeout=WAIT)
    for panel in ("#network-panel", "#page-panel"):
        box = frame.locator(panel).bounding_box()
        assert box["y"] + 200 <= 720 and box["x"] + box["width"] <= 1280, (panel, box)
    assert frame.locator("#under-the-hood").count() == 1          # the depth, collapsed under the page
    assert not frame.locator("#under-the-hood").get_attribute("open")


def test_the_highlighted_lines_are_the_largest_moves(page, server, records):
    record = records["first-lesson"]
    row = 7
    frame = open_tab(page, server, f"run=first-lesson&step={row}&mode=free&view=after")
    wait_step(frame, row)
    drawn = {(line.get_attribute("data-param"), int(line.get_attribute("data-i")), int(line.get_attribute("data-j")))
             for line in frame.locator("#network-svg line.moved").all()}
    snap = record.log[row]
    moves = sorted(((float((snap.after[name] - snap.before[name])[i, j].abs()), (name, i, j))
                    for name in ("hidden.weight", "output.weight")
                    for i in range(snap.before[name].shape[0]) for j in range(snap.before[name].shape[1])),
                   reverse=True)
    # Equal moves are drawn alike: the PASS and FAIL rows of output.weight move by equal and opposite amounts,
    # which float rounding may order either way; what a user can tell apart is the 4 decimals the tab shows.
    third = moves[2][0]
    assert drawn == {where for size, where in moves if size >= third * (1 - 1e-5)}
    assert {where for _, where in moves[:3]} <= drawn


def test_the_url_hash_restores_run_step_mode_and_view(page, server, records):
    frame = open_tab(page, server, "run=first-lesson&step=42&mode=free&view=change")
    wait_step(frame, 42)
    assert frame.locator("#run").input_value() == "first-lesson"
    assert frame.locator("#view-change").get_attribute("class") == "on"
    assert frame.locator("#mode-free").get_attribute("class") == "on"
    frame.locator("#next").click()
    wait_step(frame, 43)
    page.wait_for_url(re.compile(r"step=43"), timeout=WAIT)   # the view a teacher can reload or share
    assert "run=first-lesson" in page.url and "view=change" in page.url
    story = open_tab(page, server, "run=first-lesson&mode=story&page=5")
    story.locator("#page-title").filter(has_text="05").wait_for(timeout=WAIT)
    assert story.locator("#story-where").inner_text().strip() == "· page 5 of 11"
    assert story.locator("#worked-label").count() == 1      # the page's worked weight is marked


def test_switching_runs_keeps_the_step(page, server, records):
    frame = open_tab(page, server, "run=first-lesson&step=12&mode=free")
    wait_step(frame, 12)
    frame.locator("#run").select_option("lr5")
    # the new run's network at step 12 (step 12 alone is already on screen: the old run's, before the switch lands)
    frame.locator("#network-svg[data-run='lr5'][data-step='12']").wait_for(timeout=WAIT)
    expected = records["lr5"].log[12].loss          # then lr5's own loss at step 12, once its step has arrived
    wait_until(lambda: float(frame.locator("#loss").get_attribute("data-value")) == expected,
               f"the tab shows lr5's loss at step 12 ({expected})")


def test_one_line_width_scale_for_two_runs(page, server, records):
    """lr 0.5 and lr 5 start from the same weights: at step 0 every line is drawn as wide in both runs, and
    the widths follow |w| on the one fixed scale (the Images diagrams' scale) in both."""
    from nn_lesson.lesson.board.diagram import FIXED_SCALE
    widths = {}
    for run in ("first-lesson", "lr5"):
        frame = open_tab(page, server, f"run={run}&step=0&mode=free&view=before")
        wait_step(frame, 0)
        lines = frame.locator("#network-svg line.edge").all()
        widths[run] = {(l.get_attribute("data-param"), l.get_attribute("data-i"), l.get_attribute("data-j")):
                       float(l.get_attribute("stroke-width")) for l in lines}
        w = records[run].log[0].before
        for (name, i, j), width in widths[run].items():
            expected = 1.5 + 12 * min(abs(float(w[name][int(i), int(j)])) / FIXED_SCALE, 1)
            assert width == pytest.approx(expected, abs=0.01), (run, name, i, j)
    assert widths["first-lesson"] == widths["lr5"]


def test_compare_mode_shows_two_runs_at_the_same_step(page, server, records):
    frame = open_tab(page, server, "run=first-lesson&step=30&mode=free&compare=lr5")
    frame.locator("#network-compare svg[data-step='30']").wait_for(timeout=WAIT)
    text = frame.locator("#network-compare").inner_text()
    assert "lr5" in text and f"{records['lr5'].log[30].loss:.7g}" in text.replace("loss ", "")


def post_json(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_new_run_from_the_tab_appears_in_the_run_list_and_hparams(page, server, classroom, tmp_path):
    """Trained from story mode, page 05: the new run opens in story mode on the same page."""
    frame = open_tab(page, server, f"token={TOKEN}&run=first-lesson&mode=story&page=5")
    frame.locator("#page-title").filter(has_text="05").wait_for(timeout=WAIT)
    assert "token" not in page.url                          # kept by the tab, gone from the address bar
    frame.locator("#new-run").click()
    frame.locator("#nr-lr").fill("2")
    frame.locator("#nr-epochs").fill("3")
    frame.locator("#nr-activation").select_option("tanh")
    frame.locator("#nr-train").click()
    frame.locator("#nr-status").filter(has_text="trained:").wait_for(timeout=180000)
    name = frame.locator("#nr-status").inner_text().split("trained:")[1].split()[0]
    assert (classroom / name / "snapshots.npz").is_file()
    record = RunRecord.load(classroom / name / "snapshots.npz")
    assert record.config.lr == 2 and record.config.activation == "tanh" and len(record.log) == 3 * 6
    assert name in frame.locator("#run").inner_text() and frame.locator("#run").input_value() == name
    frame.locator("#page-title").filter(has_text="05").wait_for(timeout=WAIT)
    assert frame.locator("#mode-story").get_attribute("class") == "on"
    frame.locator('#network-svg[data-step="0"]').wait_for(timeout=WAIT)
    page.screenshot(path=str(screenshot_path(tmp_path, "lesson-tab-new-run.png")))
    # Wait for the event itself: TensorBoard's own run list has the new run (it reloads the logdir every 2 s)...
    wait_until(lambda: name in get_json(server + "data/runs"), f"TensorBoard lists {name}")
    # ...then a fresh load: a hash change alone keeps the HParams dashboard's earlier fetch of the experiment.
    page.goto("about:blank")
    page.goto(server + "#hparams")
    page.get_by_text(name).first.wait_for(timeout=WAIT)


def test_a_new_run_is_refused_to_other_origins(page, server, classroom):
    before = sorted(p.name for p in classroom.iterdir())
    route = server + "data/plugin/lesson/new_run"
    # A page of another origin (localhost is not 127.0.0.1 to a browser): a plain POST cannot carry the
    # header, and a POST with it needs a CORS preflight that TensorBoard never grants.
    page.goto(server.replace("127.0.0.1", "localhost") + "data/plugin/lesson/runs")
    outcome = page.evaluate("""async (route) => {
        const plain = await fetch(route, {method: 'POST', mode: 'no-cors', body: '{"lr": 1}'}).then(() => 'sent', (e) => 'failed');
        const withHeader = await fetch(route, {method: 'POST', headers: {'X-Lesson-New-Run': '1'}, body: '{"lr": 1}'})
            .then((r) => 'answered ' + r.status, (e) => 'blocked');
        return [plain, withHeader]; }""", route)
    assert outcome[1] == "blocked", outcome
    code, body = post_json(route, {"lr": 1}, {"Origin": "http://evil.example", "X-Lesson-New-Run": "1"})
    assert code == 403 and "origin" in body["error"]
    code, body = post_json(route, {"lr": 1}, {})
    assert code == 403 and "X-Lesson-New-Run" in body["error"]
    assert sorted(p.name for p in classroom.iterdir()) == before      # nothing was trained


# ---- TensorBoard's own dashboards with both kinds of runs ----
def test_hparams_lists_lr_activation_and_optimizer_together(page, server):
    request = urllib.request.Request(server + "data/plugin/hparams/experiment", method="POST",
                                     data=json.dumps({"experimentName": ""}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        experiment = json.loads(response.read())
    shown = [h["displayName"] for h in experiment["hparamInfos"] if h.get("differs")]
    assert {"kind", "lr", "optimizer", "activation"} <= set(shown)
    page.goto(server + "#hparams")
    page.get_by_text("a-bridge").first.wait_for(timeout=WAIT)
    page.get_by_text("first-lesson").first.wait_for(timeout=WAIT)
    checked = [c.strip() for c in page.locator("paper-checkbox[checked]").all_inner_texts()]
    assert {"kind", "lr", "optimizer", "activation"} <= set(checked), checked
    for cell in ("adam", "sgd", "sigmoid", "relu"):                                     # both kinds' cells filled
        page.get_by_text(cell, exact=True).first.wait_for(timeout=WAIT)


@pytest.mark.parametrize("dashboard", sorted(DASHBOARDS))
def test_every_dashboard_shows_our_runs(page, server, dashboard, tmp_path):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server + "#" + dashboard)
    target = page.frame_locator("iframe") if dashboard == "lesson" else page
    target.get_by_text(DASHBOARDS[dashboard]).first.wait_for(timeout=WAIT)   # the dashboard drew our runs
    page.screenshot(path=str(screenshot_path(tmp_path, f"{dashboard}.png")))


def test_images_open_on_the_network_diagram(page, server):
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server + "#images")
    first = page.get_by_text("0 the network/1 at this step").first
    first.wait_for(timeout=WAIT)
    assert first.bounding_box()["y"] < 250                          # the first card a learner meets


# ---- round 2: the README's class order at 1280×720, measured from bounding boxes ----
LAYOUT_JS = """(body, onScreen) => {
    const problems = [];
    const W = window.innerWidth, H = window.innerHeight;
    const shown = (n) => { const b = n.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
    const box = (n) => n.getBoundingClientRect();
    const name = (n) => (n.id ? '#' + n.id : n.tagName.toLowerCase() + (n.getAttribute('class') ? '.' + n.getAttribute('class') : ''))
        + ' "' + (n.textContent || '').trim().slice(0, 30) + '"';
    const panels = [...document.querySelectorAll('.panel')].filter(shown);
    for (const id of onScreen) {
        const p = document.getElementById(id);
        if (!p || !shown(p)) { problems.push('not shown: ' + id); continue; }
        const b = box(p);
        if (b.left < -1 || b.right > W + 1 || b.top < -1 || b.bottom > H + 1) problems.push(`off screen: ${id} ${JSON.stringify(b)}`);
    }
    for (const p of panels) {
        const pb = box(p);
        if (pb.left < -1 || pb.right > W + 1) problems.push('panel wider than the window: ' + p.id);
        if (p.scrollWidth > p.clientWidth + 1) problems.push(`scrolls sideways: ${p.id} ${p.scrollWidth} > ${p.clientWidth}`);
        const scrolls = p.scrollHeight > p.clientHeight + 1 && getComputedStyle(p).overflowY !== 'visible';
        for (const n of p.querySelectorAll('*')) {
            if (!shown(n) || n.closest('title')) continue;
            const closed = n.closest('details:not([open])');
            if (closed && !n.closest('summary')) continue;      // the depth, collapsed: not drawn
            const b = box(n);
            if (b.left < pb.left - 1 || b.right > pb.right + 1) problems.push(`outside its panel (x): ${name(n)} in ${p.id}`);
            if (!scrolls && (b.top < pb.top - 1 || b.bottom > pb.bottom + 1)) problems.push(`outside its panel (y): ${name(n)} in ${p.id}`);
        }
    }
    panels.forEach((a, i) => panels.slice(i + 1).forEach((b) => {
        const x = box(a), y = box(b);
        if (x.left < y.right - 1 && y.left < x.right - 1 && x.top < y.bottom - 1 && y.top < x.bottom - 1) problems.push(`panels overlap: ${a.id} ${b.id}`);
    }));
    for (const s of document.querySelectorAll('svg')) {
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
            if (w > 1 && h > 1) problems.push(`text overlaps text: ${name(a)} / ${name(c)}`);
        }));
    }
    return problems; }"""


def layout_problems(frame, on_screen: tuple[str, ...]) -> list[str]:
    return frame.locator("body").evaluate(LAYOUT_JS, list(on_screen))


STORY_PANELS = ("network-panel", "curve-panel", "page-panel")
FREE_PANELS = ("network-panel", "curve-panel", "students-panel", "decision")


def wait_page(frame, number: int):
    frame.locator("#page-title").filter(has_text=re.compile(rf"^{number:02d} ")).wait_for(timeout=WAIT)
    frame.locator("#story-where").filter(has_text=f"page {number} of").wait_for(timeout=WAIT)


def test_the_class_order_fits_1280x720_with_nothing_cut_or_overlapping(page, server, records, tmp_path):
    """The README's order: story 01-11 (PageDown, as a presenter's clicker sends), every step with forward and
    change and play, vs in both modes. At each: every panel on screen, nothing outside its panel, no text on
    another, no text cut by its drawing, both networks in the window with vs."""
    record = records["first-lesson"]
    frame = open_tab(page, server, "run=first-lesson&mode=story&page=1")
    for number in range(1, 12):
        wait_page(frame, number)
        svg = frame.locator("#network-svg")
        moment = {1: "start", 2: "start", 3: "start", 10: "heldout", 11: "end"}.get(number, "step")
        frame.locator(f'#network-svg[data-moment="{moment}"]').wait_for(timeout=WAIT)
        frame.locator("#page-panel table, #page-panel p").first.wait_for(timeout=WAIT)
        assert layout_problems(frame, STORY_PANELS) == [], number
        if moment == "start":        # before training: the starting weights, nobody flowing, the loss at the start
            assert svg.locator(".node-value").count() == 0
            assert float(frame.locator("#loss").get_attribute("data-value")) == pytest.approx(
                float(record.train.loss_by_step[0]), rel=1e-6)
            assert frame.locator("#curve-marker").get_attribute("data-value") == frame.locator("#loss").get_attribute("data-value")
            assert "before training" in frame.locator("#line").inner_text()
        if moment == "heldout":      # the final test: a held-out student through the trained weights
            conf = record.heldout.confidence_final[0]
            values = svg.locator(".node-value").evaluate_all("(ns) => ns.map((n) => n.textContent)")
            assert f"{100 * float(conf[0]):.1f} %" in values, values
            assert record.heldout_names[0] in frame.locator("#network-title").inner_text()
            assert not any(n in frame.locator("#line").inner_text() for n in record.names)
        if number == 4:
            assert frame.locator("#view-forward").get_attribute("class") == "on"
        if number == 5:
            assert frame.locator("#view-change").get_attribute("class") == "on"
            assert frame.locator("#worked-label").count() == 1
            page.screenshot(path=str(screenshot_path(tmp_path, "lesson-tab-story.png")))
        if number < 11:
            page.keyboard.press("PageDown")
    frame.locator("#mode-free").click()
    for view in ("forward", "change", "after"):
        frame.locator(f"#view-{view}").click()
        frame.locator(f"#view-{view}.on").wait_for(timeout=WAIT)
        frame.locator("#decision-svg").wait_for(timeout=WAIT)
        assert layout_problems(frame, FREE_PANELS) == [], view
    frame.locator("#play").click()
    frame.locator("#step-number").filter(has_text=re.compile(r"^([3-9]|\d\d+)$")).wait_for(timeout=WAIT)
    frame.locator("#play").click()
    frame.locator("#play").filter(has_text="play").wait_for(timeout=WAIT)
    assert layout_problems(frame, FREE_PANELS) == [], "after play"
    frame.locator("#compare").select_option("lr5")
    for mode, where in (("free", None), ("story", 5), ("story", 10)):
        if mode == "story":
            frame.locator("#mode-story").click()
            for _ in range(where - 1):
                page.keyboard.press("PageDown")
            wait_page(frame, where)
        frame.locator("#network-compare svg").wait_for(timeout=WAIT)
        panels = ("network-panel", "curve-panel", "page-panel" if mode == "story" else "students-panel")
        assert layout_problems(frame, panels) == [], (mode, where)
        for net in ("#network-svg", "#network-compare svg"):
            b = frame.locator(net).bounding_box()
            assert b["y"] >= 0 and b["y"] + b["height"] <= 720 and b["x"] + b["width"] <= 1280, (mode, where, net, b)
        assert "lr5" in frame.locator("#network-compare .net-title").inner_text()
        if where == 10:
            page.screenshot(path=str(screenshot_path(tmp_path, "lesson-tab-vs.png")))


def test_a_reload_opens_the_same_view(page, server):
    """The address holds what the user chose: page 05 reopens on its own view (change) after a reload; a view
    picked with its button reopens as picked; the next page opens on its own view again."""
    frame = open_tab(page, server, "run=first-lesson&mode=story&page=5")
    wait_page(frame, 5)
    frame.locator("#view-change.on").wait_for(timeout=WAIT)
    page.wait_for_url(re.compile(r"page=5"), timeout=WAIT)
    assert "view=" not in page.url and "step=" not in page.url
    address = page.url
    page.goto("about:blank")
    page.goto(address)
    frame = page.frame_locator("iframe")
    wait_page(frame, 5)
    frame.locator("#view-change.on").wait_for(timeout=WAIT)
    frame.locator("#view-after").click()
    page.wait_for_url(re.compile(r"view=after"), timeout=WAIT)
    page.reload()
    frame = page.frame_locator("iframe")
    wait_page(frame, 5)
    frame.locator("#view-after.on").wait_for(timeout=WAIT)
    page.keyboard.press("ArrowRight")
    wait_page(frame, 6)
    frame.locator("#view-forward.on").wait_for(timeout=WAIT)           # page 06's own view
    page.wait_for_url(re.compile(r"page=6"), timeout=WAIT)
    assert "view=" not in page.url


def test_keys_move_the_step_on_load_and_past_a_focused_menu(page, server):
    """No click first: → moves the step. With the run menu focused, → and PageDown still move the step and the
    run stays; PageUp goes back; space plays and pauses."""
    frame = open_tab(page, server, "run=first-lesson&step=0&mode=free")
    wait_step(frame, 0)
    page.keyboard.press("ArrowRight")
    wait_step(frame, 1)
    frame.locator("#run").select_option("lr5")
    frame.locator("#run").focus()
    wait_step(frame, 1)
    frame.locator("#loss").filter(has_text=re.compile(r"\d")).wait_for(timeout=WAIT)
    page.keyboard.press("ArrowRight")
    wait_step(frame, 2)
    page.keyboard.press("PageDown")
    wait_step(frame, 3)
    page.keyboard.press("PageUp")
    wait_step(frame, 2)
    page.keyboard.press("ArrowLeft")
    wait_step(frame, 1)
    assert frame.locator("#run").input_value() == "lr5"
    page.keyboard.press(" ")
    frame.locator("#play").filter(has_text="pause").wait_for(timeout=WAIT)
    page.keyboard.press(" ")
    frame.locator("#play").filter(has_text="play").wait_for(timeout=WAIT)


def test_two_view_switches_in_one_instant_leave_the_map_of_the_last(page, server):
    frame = open_tab(page, server, "run=first-lesson&step=5&mode=free")
    wait_step(frame, 5)
    frame.locator("#decision h3").filter(has_text="after step 5").wait_for(timeout=WAIT)
    with page.expect_response(lambda r: "decision_map" in r.url and "before=1" in r.url, timeout=WAIT), \
            page.expect_response(lambda r: "decision_map" in r.url and "before=0" in r.url, timeout=WAIT):
        frame.locator("body").evaluate(
            "() => { document.getElementById('view-before').click(); document.getElementById('view-after').click(); }")
    frame.locator("#decision h3").filter(has_text="after step 5").wait_for(timeout=WAIT)
    # both answers are in and drawn (two frames later); the map is still the one of the last switch
    frame.locator("body").evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert "after step 5" in frame.locator("#decision h3").inner_text()
    assert frame.locator("#view-after").get_attribute("class") == "on"


@pytest.mark.parametrize("where", ["run=first-lesson&mode=story&page=5", "run=first-lesson&step=7&mode=free"])
def test_a_phone_gets_one_column_and_no_sideways_scroll(browser, server, where, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        frame = open_tab(page, server, where)
        frame.locator("#network-svg").wait_for(timeout=WAIT)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        inner = frame.locator("body").evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert inner[0] <= inner[1], inner
        boxes = [frame.locator(f"#{p}").bounding_box() for p in ("network-panel", "curve-panel", "page-panel")]
        assert len({round(b["x"]) for b in boxes}) == 1                        # one column
        sizes = frame.locator("#network-svg").evaluate(
            "(s) => [...s.querySelectorAll('text')].map((t) => parseFloat(t.getAttribute('font-size')) * t.getScreenCTM().a)")
        assert min(sizes) >= 11.9, sizes       # the network's numbers at 12 px on a phone (9 px before)
        assert [p for p in layout_problems(frame, ()) if "text" in p or "sideways" in p] == []
        page.screenshot(path=str(tmp_path / "phone.png"))
    finally:
        context.close()
