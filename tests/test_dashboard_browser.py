"""Headless Chromium opens the real dashboard; the test checks what the page actually shows."""

import io
import subprocess
import tempfile

import pytest
from PIL import Image, ImageStat

from conftest import need_program
from nn_lesson.lesson.board.serve import start_tensorboard

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
         "--window-size=1400,1000", "--virtual-time-budget=30000"]


@pytest.fixture(scope="module")
def dashboard(written_run):
    run_dir, _ = written_run
    chromium = need_program("chromium")
    proc, url = start_tensorboard(run_dir.parent)
    yield chromium, url
    proc.terminate()
    proc.wait(timeout=20)


def chromium_run(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, timeout=120)


def test_scalars_dashboard_screenshot_is_not_blank(dashboard, tmp_path):
    chromium, url = dashboard
    shot = tmp_path / "scalars.png"
    chromium_run(chromium, f"--screenshot={shot}", url + "#scalars")
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (1400, 1000)
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50          # charts, text and the orange bar, not one flat colour
    assert max(ImageStat.Stat(image).stddev) > 20


def test_time_series_page_names_our_tags(dashboard):
    chromium, url = dashboard
    dom = chromium_run(chromium, "--dump-dom", url + "#timeseries").stdout.decode(errors="replace")
    for tag in ("1 loss/all training students", "1 loss/epoch: held-out students"):
        assert tag in dom
    assert "first-lesson" in dom  # the run folder's name, listed by the server from our logdir


# ---- the Lesson tab and every dashboard, driven by playwright on Debian's chromium ----
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
DASHBOARDS = ("timeseries", "scalars", "custom_scalars", "images", "text", "graphs", "hparams", "lesson")


@pytest.fixture(scope="module")
def browser_page(dashboard):
    chromium, url = dashboard
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page, url
        browser.close()


def test_lesson_tab_steps_through_a_run(browser_page, written_run, tmp_path):
    from nn_lesson.lesson.run.record import RunRecord
    page, url = browser_page
    record = RunRecord.load(written_run[0] / "snapshots.npz")
    page.goto(url + "#lesson")
    frame = page.frame_locator("iframe")                    # a dynamic plugin runs in an iframe
    frame.locator("#run").select_option(written_run[0].name)
    frame.locator("#step-number").filter(has_text="0").wait_for(timeout=30000)
    assert frame.locator("#step-count").inner_text() == "360"
    frame.locator("#next").click()
    frame.locator("#step-number").filter(has_text="1").wait_for()
    frame.locator("#next").click()
    frame.locator("#step-number").filter(has_text="2").wait_for()
    frame.locator("body").press("ArrowRight")               # the arrow keys step too
    frame.locator("#step-number").filter(has_text="3").wait_for()
    loss = float(frame.locator("#loss").inner_text())
    assert loss == pytest.approx(record.log[3].loss, rel=1e-6)
    assert float(frame.locator("#loss").get_attribute("data-value")) == record.log[3].loss
    assert frame.locator("#network-svg line.edge").count() == 20  # 12 + 8 weights drawn from the step
    frame.locator('line.edge[data-param="hidden.weight"][data-i="2"][data-j="0"]').click(force=True)
    details = frame.locator("#weight").inner_text()
    after = float(record.log[3].after["hidden.weight"][2, 0])
    assert "studied→h3" in details and f"{after:+.6f}".replace("-", "−") in details
    assert record.students_of(3)[0] in frame.locator("#students-table").inner_text()
    frame.locator("#decision-svg").wait_for()             # the decision map after the step
    frame.locator("#mode-story").click()                    # the story: page 1 of 11
    frame.locator("#story-where").filter(has_text="page 1 of 11").wait_for()
    assert "01 the challenge" in frame.locator("#page-title").inner_text()
    page.screenshot(path=str(tmp_path / "lesson.png"))


def test_every_dashboard_screenshot(browser_page, tmp_path):
    page, url = browser_page
    for name in DASHBOARDS:
        page.goto(url + "#" + name)
        page.wait_for_timeout(2500)
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot))
        image = Image.open(shot).convert("RGB")
        assert image.size == (1400, 1000) and max(ImageStat.Stat(image).stddev) > 15, name
    print("screenshots:", tmp_path)


def test_hparams_columns_visible_by_default(browser_page):
    from nn_lesson.lesson.board.lesson_run import HPARAMS_SHOWN
    page, url = browser_page
    page.goto(url + "#hparams")
    page.get_by_text("init, seed").first.wait_for(timeout=30000)
    checked = page.locator("paper-checkbox[checked]").all_inner_texts()
    shown = [c.strip() for c in checked]
    for column in HPARAMS_SHOWN:
        assert column in shown, (column, shown)
