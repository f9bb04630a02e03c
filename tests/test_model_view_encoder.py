"""A transformer encoder in the Lesson tab's model view: nn.TransformerEncoder (d 32, 2 heads, 2 layers) recorded by
the Recorder and written with write_tensorboard, served by a real tensorboard and drawn in Debian's chromium at
1280x720. MultiheadAttention computes with its out_proj's weights without calling out_proj: the view says so in
words, and says otherwise for a layer that is never called and whose weights get no gradient."""

import base64
import json
from urllib.parse import quote

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

from test_model_view import LAYOUT_JS, MODEL_PANELS, WAIT, screenshot_path, wait_blocks

K = 2
STEPS = 8
PARENT_WORDS = "its weights are used by its parent's forward"


class Encoder(nn.Module):
    """Tokens of 8 features, a linear embedding to d 32, a TransformerEncoder of `layers` layers (2 heads), a mean
    over the sequence and a linear head to 3 classes; `spare`: a layer that is built and never called."""

    def __init__(self, spare: bool = False, layers: int = 2):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        layer = nn.TransformerEncoderLayer(32, 2, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(32, 3)
        if spare:
            self.spare = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


def train(spare: bool = False, steps: int = STEPS, layers: int = 2, policy=None):
    torch.manual_seed(0)
    model = Encoder(spare, layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 6, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    with Recorder(model, opt, policy=policy or CapturePolicy.stats_and_every(K)) as rec:
        for i in range(steps):
            xb, yb = x[i % 4 * 8:(i % 4 + 1) * 8], y[i % 4 * 8:(i % 4 + 1) * 8]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return rec


@pytest.fixture(scope="module")
def recorded():
    return train()


@pytest.fixture(scope="module")
def client(recorded, tmp_path_factory):
    runs = tmp_path_factory.mktemp("encoder") / "runs"
    write_tensorboard(recorded.log, runs / "encoder", stats=recorded.stats_log)
    write_tensorboard(train(spare=True, steps=2).log, runs / "spare")
    app = application.TensorBoardWSGI([LessonPlugin(base_plugin.TBContext(logdir=str(runs)))])
    return werkzeug_test.Client(app, wrappers.Response)


def model_step(client, run, step):
    response = client.get("/data/plugin/lesson/model_step", query_string={"run": run, "step": str(step)})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_encoders_blocks_and_groups(client, recorded):
    view = model_step(client, "encoder", 1)
    groups = [g["name"] for g in view["groups"]]
    assert groups == ["embed", "encoder.layers.0.self_attn", "encoder.layers.0", "encoder.layers.1.self_attn",
                      "encoder.layers.1", "head"]
    blocks = {b["name"]: b for b in view["blocks"]}
    attn = blocks["encoder.layers.0.self_attn"]                     # in_proj_weight: MultiheadAttention's own
    assert attn["main"] == "encoder.layers.0.self_attn.in_proj_weight" and attn["ratio"] is not None
    snap = recorded.log[1]
    w = "encoder.layers.1.linear1.weight"
    before, after = snap.before[w].double(), snap.after[w].double()
    ratio = float((after - before).std(correction=0) / before.std(correction=0))
    assert blocks["encoder.layers.1.linear1"]["ratio"] == pytest.approx(ratio, rel=1e-9)


def test_out_proj_never_ran_and_the_view_says_why(client, recorded):
    """The Recorder's report lists out_proj as never ran; the view says it in words: it was never called, yet its
    weights got gradients, so its parent's forward used them. Its update ratio is still the run's own."""
    report = recorded.report()
    assert set(report.never_ran) == {f"encoder.layers.{i}.self_attn.out_proj" for i in (0, 1)}
    view = model_step(client, "encoder", 0)
    blocks = {b["name"]: b for b in view["blocks"]}
    for i in (0, 1):
        out_proj = blocks[f"encoder.layers.{i}.self_attn.out_proj"]
        assert out_proj["never_ran"] == (
            "never ran: no recorded step called it, yet its weights got gradients — "
            f"{PARENT_WORDS} (encoder.layers.{i}.self_attn)")
        assert out_proj["group"] == f"encoder.layers.{i}.self_attn" and out_proj["hist_act"] is None
        assert out_proj["dead_note"] == out_proj["never_ran"]
        w = f"encoder.layers.{i}.self_attn.out_proj.weight"
        snap = recorded.log[0]
        assert float(snap.grads[w].norm()) > 0
        assert out_proj["grad_norm"] == pytest.approx(float(snap.grads[w].double().norm()), rel=1e-9)
    ran = [b for name, b in blocks.items() if "out_proj" not in name]
    assert all(b["never_ran"] is None for b in ran)


def test_a_layer_never_called_with_no_gradient_is_not_said_to_be_used(client):
    """The words are chosen by the run's numbers: `spare` is never called and its weights get no gradient, so it
    is not said to be used by its parent; out_proj in the same run is."""
    blocks = {b["name"]: b for b in model_step(client, "spare", 0)["blocks"]}
    assert blocks["spare"]["never_ran"] == "never ran: no recorded step called it, and its weights got no gradient"
    assert PARENT_WORDS not in blocks["spare"]["never_ran"]
    assert PARENT_WORDS in blocks["encoder.layers.0.self_attn.out_proj"]["never_ran"]


def ratio_bin(snap, w: str) -> int:
    """The colour bin of std(update) / std(weight before) on the fixed log scale 1e-5 .. 1e-1 (8 bins)."""
    import math
    before, after = snap.before[w].double(), snap.after[w].double()
    ratio = float((after - before).std(correction=0) / before.std(correction=0))
    return min(7, max(0, math.floor((math.log10(ratio) + 5) / 4 * 8)))


HOSTILE = '<img src=x onerror="pwned=1">'


class Hostile(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.ModuleDict({HOSTILE: nn.Sequential(nn.Linear(4, 4), nn.ReLU())})

    def forward(self, x):
        return self.inner[HOSTILE](x)


def hostile_run():
    """A model whose module names are markup (a ModuleDict key may hold any character but '.')."""
    torch.manual_seed(0)
    model = Hostile()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt) as rec:
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
    return rec.log


# ---- in a browser: Debian's chromium, a real tensorboard ----
@pytest.fixture(scope="module")
def server(recorded, tmp_path_factory):
    from conftest import need_program
    from nn_lesson.lesson.board.serve import start_tensorboard
    need_program("chromium")
    runs = tmp_path_factory.mktemp("encoder-browser") / "runs"
    write_tensorboard(recorded.log, runs / "encoder", stats=recorded.stats_log)
    write_tensorboard(hostile_run(), runs / "hostile")
    write_tensorboard(train(steps=3, layers=8, policy=CapturePolicy.stats()).log, runs / "encoder8")
    proc, url = start_tensorboard(runs)
    yield url, SnapshotLog.load(runs / "encoder" / "snapshots.npz")
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def page(server):
    from conftest import chromium_page
    with chromium_page() as page:
        yield page


@pytest.mark.browser
def test_the_encoder_fits_1280x720_and_out_proj_is_explained_in_words(page, server, tmp_path):
    url, log = server
    page.goto(url + "#lesson&run=encoder")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 0)
    assert frame.locator("#mv-blocks-svg rect.block").count() == len(log.layers) + 2   # + the two self_attn
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    rect = frame.locator('#mv-blocks-svg rect.block[data-name="encoder.layers.1.self_attn.out_proj"]')
    assert "never-ran" in rect.get_attribute("class")
    rect.click()
    words = frame.locator("#mv-never-ran")
    words.wait_for(timeout=WAIT)
    assert PARENT_WORDS + " (encoder.layers.1.self_attn)" in words.text_content()
    assert "never ran" in frame.locator('svg.mv-hist[data-what="activation"]').text_content()
    # the step moves the colours: each block's bin is its own ratio's at the step on screen, and they change
    bins = []
    for row in (0, 1):
        if row:
            frame.locator("#next").click()
            wait_blocks(frame, K)
        shown = {}
        for w in [p for p in log.param_names if p.endswith("weight") and len(log.slot(p).shape) >= 2]:
            name = w.rpartition(".")[0]
            shown[name] = frame.locator(f'#mv-blocks-svg rect.block[data-name="{name}"]').get_attribute("data-bin")
            assert shown[name] == str(ratio_bin(log[row], w)), (row, name)
        bins.append(shown)
    assert bins[0] != bins[1]
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    shot = screenshot_path(tmp_path, "model-view-encoder.png")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10000


@pytest.mark.browser
def test_module_names_are_shown_as_text_never_as_markup(page, server):
    url, _ = server
    page.goto("about:blank")
    page.goto(url + "#lesson&run=hostile")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 0)
    groups = frame.locator("#mv-blocks-svg text.group").all_text_contents()
    assert any(HOSTILE in g or "onerror" in g for g in groups), groups
    assert HOSTILE + ".0" in frame.locator("#mv-detail-title").text_content()
    assert frame.locator("#model-view img").count() == 0
    assert page.evaluate("() => [...document.querySelectorAll('iframe')].map((f) => f.contentWindow.pwned)") == [None]


@pytest.mark.browser
def test_tensorboards_histograms_name_the_encoders_modules(page, server, tmp_path):
    """TensorBoard's own Histograms dashboard groups the run's histograms by module path."""
    url, _ = server
    page.goto("about:blank")
    shown = base64.b64encode(json.dumps({"encoder": True, "hostile": False, "encoder8": False}).encode()).decode()
    page.goto(url + "#histograms&runSelectionState=" + quote(shown))      # the encoder run alone
    for group in ("encoder.layers.0.linear1", "encoder.layers.1.self_attn", "head"):
        page.get_by_text(group, exact=True).first.wait_for(timeout=WAIT)
    grad = page.get_by_text("encoder.layers.0.linear1/weight.grad").first
    if not grad.is_visible():                                    # a folded group: open it
        page.get_by_text("encoder.layers.0.linear1", exact=True).first.click()
    grad.wait_for(timeout=WAIT)
    page.get_by_text("encoder.layers.0.linear1", exact=True).first.evaluate("(e) => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(screenshot_path(tmp_path, "model-histograms.png")))


@pytest.mark.browser
def test_an_8_layer_encoder_opens_folded_and_a_row_opens(page, server):
    """18 group rows: more than fit, so every row opens folded, each coloured by the worst block it names; a row
    opened shows its blocks, the named one in the folded row's colour; all inside 1280x720, no text over text."""
    url, _ = server
    page.goto("about:blank")
    page.goto(url + "#lesson&run=encoder8")
    frame = page.frame_locator("iframe")
    wait_blocks(frame, 0)
    groups = frame.locator("#mv-blocks-svg text.group")
    assert groups.count() == 18 and frame.locator('#mv-blocks-svg text.group[data-folded="1"]').count() == 18
    assert frame.locator("#mv-fold").text_content() == "open all"
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
    folded = frame.locator('#mv-blocks-svg rect.folded[data-group="6"]')
    worst, bin_ = folded.get_attribute("data-worst"), folded.get_attribute("data-bin")
    assert worst.startswith("encoder.layers.2.") and bin_ != ""
    height = frame.locator("#mv-blocks-svg text.group").first.bounding_box()["height"]
    assert height >= 10                                           # the rows' names stay readable
    frame.locator('#mv-blocks-svg text.group[data-group="6"]').click()
    block = frame.locator(f'#mv-blocks-svg rect.block[data-name="{worst}"]')
    block.wait_for(timeout=WAIT)
    assert block.get_attribute("data-bin") == bin_
    problems = frame.locator("body").evaluate(LAYOUT_JS, list(MODEL_PANELS))
    assert problems == [], problems
