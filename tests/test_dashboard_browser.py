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
