"""The second bridge: `nn-lesson bridge --model cnn`, a residual CNN with BatchNorm on the digits images, written
as the Lesson tab's model view, with pages whose every claim is chosen by a check on the run's numbers. Each
claim is shown true on some real runs and false on others (no mocks: every run here is trained)."""

import json

import numpy as np

import pytest
import torch
from torch import nn
from werkzeug import test as werkzeug_test
from werkzeug import wrappers
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin

from conftest import no_hooks_left, run_cli
from nn_lesson.hooks import Recorder, SnapshotLog
from nn_lesson.lesson.bridge import cnn_pages as cp
from nn_lesson.lesson.bridge.train import BridgeConfig, train_bridge
from nn_lesson.models import ResidualCNN

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def runs():
    """Real runs, one thread each (as the CLI sets): the default (20 epochs), and short ones that go wrong."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            "default": train_bridge(BridgeConfig(model="cnn")),
            "no_bn": train_bridge(BridgeConfig(model="cnn", batchnorm=False, epochs=3)),
            "lr_high": train_bridge(BridgeConfig(model="cnn", lr=5.0, epochs=2)),
            "lr_dead": train_bridge(BridgeConfig(model="cnn", lr=20.0, epochs=3)),
            "adam": train_bridge(BridgeConfig(model="cnn", optimizer="adam", epochs=1, policy="stats+every:5")),
            "momentum": train_bridge(BridgeConfig(model="cnn", optimizer="momentum", epochs=1, policy="stats+every:5")),
            "stats_only": train_bridge(BridgeConfig(model="cnn", epochs=1, policy="stats")),
            "every7": train_bridge(BridgeConfig(model="cnn", epochs=2, policy="every:7")),
        }
    finally:
        torch.set_num_threads(threads)


# ---- the model ----
def test_the_cnn_is_residual_with_batchnorm_and_named_by_module_path():
    net = ResidualCNN()
    names = [n for n, _ in net.named_modules() if n]
    assert {"stem.conv", "stem.bn", "layers.0.conv1", "layers.0.bn2", "layers.1.relu", "head.fc"} <= set(names)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ResidualCNN(batchnorm=False).modules())
    x = torch.rand(5, 64)
    assert torch.equal(net(x), net(x.reshape(5, 1, 8, 8))) and net(x).shape == (5, 10)
    # the shortcut: with the branch's last BatchNorm scaled to 0 a block passes relu(its input) on unchanged
    block = net.layers[0]
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    h = torch.randn(3, 16, 8, 8)
    assert torch.equal(block(h), h.relu())
    with pytest.raises(ValueError):
        ResidualCNN(channels=0)


def test_the_default_cnn_learns_the_digits_in_well_under_a_minute(runs):
    """And steadily: each epoch's short last batch is dropped, so BatchNorm's running averages do not swing."""
    run = runs["default"]
    assert min(run.accuracy[5:]) >= 0.9, run.accuracy
    assert run.config.optimizer == "sgd" and run.config.learning_rate == 0.1 and run.config.policy == "stats+every:50"
    assert run.accuracy[-1] >= 0.95, run.accuracy
    assert run.seconds < 60
    # statistics of every step, every number of every 50th
    assert len(run.stats) == run.epoch_end_steps[-1] + 1
    assert run.log.step.tolist() == list(range(0, run.epoch_end_steps[-1] + 1, 50))


def test_recording_leaves_the_cnn_as_a_bare_run_leaves_it():
    """Bare and recorded from the same state, BatchNorm's running averages included: bit-identical."""
    from nn_lesson.hooks import CapturePolicy

    def train(recorded: bool):
        torch.manual_seed(0)
        net = ResidualCNN(8, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
        loss_fn = nn.CrossEntropyLoss()

        def loop():
            for i in range(0, 32, 8):
                opt.zero_grad()
                loss_fn(net(x[i:i + 8]), y[i:i + 8]).backward()
                opt.step()
        if recorded:
            with Recorder(net, opt, loss_fn, policy=CapturePolicy.stats_and_every(2)) as rec:
                loop()
            assert no_hooks_left(net, opt) and len(rec.log) == 2 and len(rec.stats_log) == 4
        else:
            loop()
        return net.state_dict()
    bare, recorded = train(False), train(True)
    assert all(torch.equal(bare[k], recorded[k]) for k in bare)


# ---- cnn/01: the rule at depth ----
def test_the_rule_holds_for_sgd_and_not_for_momentum_or_adam(runs):
    assert cp.rule_holds(runs["default"]).holds and cp.rule_holds(runs["no_bn"]).holds
    for name in ("adam", "momentum"):
        claim = cp.rule_holds(runs[name])
        assert not claim.holds and name in claim.sentence
    assert not cp.rule_holds(runs["stats_only"]).holds   # nothing kept in full: it says so, claims nothing


def test_the_worked_weight_is_the_runs_own_numbers(runs):
    run = runs["default"]
    row = cp.full_row(run)
    snap = run.log[row]
    name, index = cp.worked_weight(run, row)
    assert name == "stem.conv.weight"
    grad = snap.grads[name]
    assert grad[index].abs() == grad.abs().max()
    before, g, after = (float(t[name][index]) for t in (snap.before, snap.grads, snap.after))
    assert after != before
    # checked against the recorded before / gradient / after, to float32 rounding
    assert abs(after - (before - 0.1 * g)) <= 2 * torch.finfo(torch.float32).eps * abs(after)
    _, page = cp.rule_page(run)
    for value in (before, g, before - 0.1 * g, after):
        assert f"{value:.8f}" in page
    assert f"step {snap.step}" in page and "| yes |" in page and "**no**" not in page
    _, adam_page = cp.rule_page(runs["adam"])
    assert "**no**" in adam_page


def edited(log, tmp_path, edit):
    """A copy of `log` through its own file, with `edit(arrays)` applied to the numbers read back."""
    from nn_lesson.hooks.snapshot_file import read_snapshot_file
    header, arrays = read_snapshot_file(log.save(tmp_path / f"edited-{len(list(tmp_path.iterdir()))}.npz"))
    arrays = {k: np.array(v) for k, v in arrays.items()}
    edit(arrays)
    return SnapshotLog.from_file_contents(header, arrays)


def test_the_rule_check_fails_when_a_weight_moved_by_anything_but_the_rule(runs, tmp_path):
    """The check can fail: one number of one recorded 'after' nudged by 1e-6 is caught."""
    run = runs["default"]
    row = cp.full_row(run)

    def nudge(arrays):
        arrays["param_after"][row, 5] += 1e-6
    nudged = type(run)(**{**run.__dict__, "log": edited(run.log, tmp_path, nudge)})
    assert cp.rule_holds(run).holds and not cp.rule_holds(nudged).holds


# ---- cnn/02: the health claims, each true somewhere and false somewhere ----
CLAIMS = {
    "learned": (["default"], ["no_bn", "lr_dead"]),
    "guessing": (["no_bn", "lr_dead"], ["default"]),
    "loss_stuck": (["no_bn", "lr_dead"], ["default"]),
    "first_epoch_too_large": (["lr_high", "lr_dead"], ["default", "no_bn"]),
    "mostly_dead": (["lr_dead"], ["default", "no_bn"]),
    "quiet_branches": (["no_bn"], ["default", "lr_high"]),
}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_each_health_claim_is_true_on_some_runs_and_false_on_others(runs, claim):
    true_on, false_on = CLAIMS[claim]
    check = getattr(cp, claim)
    for name in true_on:
        assert check(runs[name]).holds, (claim, name, check(runs[name]).sentence)
    for name in false_on:
        assert not check(runs[name]).holds, (claim, name, check(runs[name]).sentence)


@pytest.mark.parametrize("name", ["default", "no_bn", "lr_high", "lr_dead"])
def test_the_health_page_states_exactly_the_warnings_that_hold(runs, name):
    run = runs[name]
    _, page = cp.health_page(run)
    claims = cp.health_claims(run)
    for claim in claims[2:]:   # the warnings: said when they hold, and only then in bold
        if claim.holds:
            assert claim.sentence in page
    warnings = [c for c in claims[2:] if c.holds]
    assert ("No warning sign." in page) == (not warnings)
    assert ("**The learning rate is too high.**" in page) == cp.first_epoch_too_large(run).holds
    assert ("**Dead units.**" in page) == cp.mostly_dead(run).holds
    assert ("**The residual branches start quiet.**" in page) == cp.quiet_branches(run).holds
    assert "nan" not in page.lower()


def test_the_branch_ratios_read_a_wrapped_nets_names_too():
    """Under torchrun the Recorder sees DistributedDataParallel, whose names start with "module.": the branch
    ratios are found there too (a container of the same name stands in for it here, in one process)."""
    from collections import OrderedDict
    from types import SimpleNamespace
    from nn_lesson.hooks import CapturePolicy
    torch.manual_seed(0)
    wrapped = nn.Sequential(OrderedDict(module=ResidualCNN(8, 2, batchnorm=False)))
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with Recorder(wrapped, opt, loss_fn, policy=CapturePolicy.stats_and_every(2)) as rec:
        opt.zero_grad()
        loss_fn(wrapped(x), y).backward()
        opt.step()
    fake = SimpleNamespace(log=rec.log, stats=rec.stats_log)
    ratios = dict(cp.branch_ratios(fake))
    first = rec.log[0].activations
    expected = float(first["module.layers.0.conv2"].double().std(correction=0)
                     / first["module.stem.relu"].double().std(correction=0))
    assert set(ratios) == {"module.layers.0", "module.layers.1"} and abs(ratios["module.layers.0"] - expected) < 1e-4


def test_claims_rest_on_the_numbers_they_print(runs):
    """The sentences' numbers are the run's: the largest first-epoch ratio, the dead share, the branch ratios."""
    from nn_lesson.lesson.board.scalars import update_to_weight_ratio
    run = runs["lr_high"]
    n = cp.steps_per_epoch(run)
    worst = max(float(update_to_weight_ratio(run.stats, w)[:n].max()) for w in cp.main_weights(run.stats))
    assert worst >= cp.FAR_TOO_LARGE and cp._g(worst) in cp.first_epoch_too_large(run).sentence
    run = runs["lr_dead"]
    row = cp.full_row(run)
    acts = run.log[row].activations
    share = max(float((acts[k] == 0).double().mean()) for k in cp.relu_layers(run.log))
    assert f"{100 * share:.0f}%" in cp.mostly_dead(run).sentence
    run = runs["no_bn"]
    first = run.log[0].activations   # step 0 is kept in full: the statistics' std equals the numbers' own
    expected = float(first["layers.0.conv2"].double().std(correction=0) / first["stem.relu"].double().std(correction=0))
    assert abs(dict(cp.branch_ratios(run))["layers.0"] - expected) < 1e-4
    assert f"{expected:.2f}" in cp.quiet_branches(run).sentence


def test_epochs_are_read_by_step_not_by_row_when_only_every_kth_step_was_kept(runs):
    """--policy every:7 keeps steps 0, 7, 14, ...: "the first epoch" is its steps below 22, not its first 22 rows."""
    import re
    run = runs["every7"]
    n = cp.steps_per_epoch(run)
    assert n == 22 and run.stats is None and run.log.step.tolist()[:4] == [0, 7, 14, 21]
    step = int(re.search(r"at step (\d+)", cp.first_epoch_too_large(run).sentence).group(1))
    assert step < n and step % 7 == 0
    last = run.log.step >= n
    mean = float(run.log.loss[last].double().mean())
    assert cp._g(mean) in cp.loss_stuck(run).sentence


def test_the_claims_never_take_nan_for_health(runs, tmp_path):
    """A run whose loss and accuracy became NaN is guessing and stuck, never 'learned'."""
    run = runs["default"]

    def spoil(arrays):
        arrays["loss"][-3:] = float("nan")
    stats = edited(run.stats, tmp_path, spoil)
    broken = type(run)(**{**run.__dict__, "stats": stats, "accuracy": [*run.accuracy[:-1], float("nan")]})
    assert cp.loss_stuck(broken).holds and cp.guessing(broken).holds and not cp.learned(broken).holds


# ---- the command ----
@pytest.fixture(scope="module")
def cnn_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    for extra in ([], ["--no-batchnorm"], ["--lr", "5"]):
        result = run_cli("bridge", "--model", "cnn", "--epochs", "1", "--quiet", "--logdir", str(root / "runs"),
                         *extra, cwd=root, timeout=300)
        assert result.returncode == 0, result.stderr
    return root / "runs"


def test_the_command_writes_a_model_view_run_with_the_pages(cnn_runs):
    # a learning rate asked for is in the name (a new user's --lr 5 run was bridge_cnn_sgd-2 beside the default)
    assert sorted(p.name for p in cnn_runs.iterdir()) == ["bridge_cnn_sgd", "bridge_cnn_sgd_lr5", "bridge_cnn_sgd_nobn"]
    folder = cnn_runs / "bridge_cnn_sgd"
    assert (folder / "statistics.npz").is_file() and not (folder / ".model-view").exists()
    log = SnapshotLog.load(folder / "snapshots.npz")
    assert "record" not in log.header()            # a plain log: the Lesson tab's "your model" kind
    assert len(SnapshotLog.load(folder / "statistics.npz")) == 22 and log.step.tolist() == [0]
    meta = json.loads((folder / "bridge.json").read_text())
    assert meta["config"]["model"] == "cnn" and meta["config"]["batchnorm"] and len(meta["heldout_accuracy_by_epoch"]) == 1
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"cnn/01 the same rule, per layer at depth", "cnn/02 what the health view shows",
            "cnn/03 compare: without BatchNorm, too high a learning rate", "bridge/03 accuracy per epoch"} <= set(tags["tensors"])
    assert "6 health/update-to-weight ratio layers.1.conv2.weight" in tags["scalars"]
    assert len(acc.Scalars("1 loss/this step's batch")) == 22      # every step, from the statistics
    assert "digits/held-out predictions" in tags["images"]
    page = acc.Tensors("cnn/02 what the health view shows")[0].tensor_proto.string_val[0].decode()
    assert "update ratio" in page
    assert set(acc.PluginTagToContent("hparams")) >= {"_hparams_/experiment", "_hparams_/session_start_info"}


def test_the_lesson_tab_opens_it_as_the_model_view(cnn_runs):
    from nn_lesson.lesson.board.plugin import LessonPlugin
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(cnn_runs))
    provider = data_provider.MultiplexerDataProvider(mux, str(cnn_runs))
    plugin = LessonPlugin(base_plugin.TBContext(logdir=str(cnn_runs), multiplexer=mux, data_provider=provider))
    client = werkzeug_test.Client(application.TensorBoardWSGI([plugin], data_provider=provider), wrappers.Response)
    body = client.get("/data/plugin/lesson/runs").get_json()
    assert {d["run"]: d["kind"] for d in body["details"]} == {
        "bridge_cnn_sgd": "model", "bridge_cnn_sgd_lr5": "model", "bridge_cnn_sgd_nobn": "model"}
    response = client.get("/data/plugin/lesson/model_step", query_string={"run": "bridge_cnn_sgd", "step": 0})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "layers.1.conv2" in response.get_data(as_text=True)


@pytest.mark.parametrize("args, message", [
    (["--model", "cnn", "--hidden", "8"], "argument --hidden: is for --model mlp"),
    (["--no-batchnorm"], "argument --no-batchnorm: is for --model cnn"),
    (["--channels", "8"], "argument --channels: is for --model cnn"),
    (["--model", "cnn", "--lightning"], "argument --lightning: is for --model mlp"),
    (["--policy", "stats+every:5"], "stats+every:K is the CNN's policy"),
    (["--model", "cnn", "--policy", "stats+every:x"], "K must be a whole number"),
    (["--model", "cnn", "--policy", "every:0"], "K must be at least 1"),
    (["--model", "cnn", "--channels", "1000"], "at most 128"),
    (["--model", "cnn", "--blocks", "0"], "--blocks"),
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--model", "cnn", "--batch-size", "1439"], "must fit in the 1,438 training digits"),
])
def test_bad_cnn_arguments_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    result = run_cli("bridge", *args, "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nn-lesson bridge: error:") and message in last, result.stderr
    assert not (tmp_path / "runs").exists()


def test_help_explains_the_cnn_flags(tmp_path):
    out = run_cli("bridge", "--help", cwd=tmp_path).stdout
    for flag in ("--model {mlp,cnn}", "--no-batchnorm", "--channels", "--blocks", "stats+every:K", "--lr 5"):
        assert flag in out, flag


def test_the_cnn_under_torchrun_writes_rank_0_and_every_rank_on_request(tmp_path):
    """Two processes (gloo): rank 0 writes the model view by default, --every-rank each its own NAME.rank<r>."""
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--rdzv-endpoint",
           f"127.0.0.1:{port}", "-m", "nn_lesson", "bridge", "--model", "cnn", "--epochs", "1", "--name", "ddp",
           "--every-rank", "--quiet", "--logdir", str(tmp_path / "runs")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "ddp.rank1"]
    for folder in ("ddp", "ddp.rank1"):
        stats = SnapshotLog.load(tmp_path / "runs" / folder / "statistics.npz")
        assert len(stats) == 22       # each process 32 of every 64 digits, of its half of the 1,438: 22 steps
    assert "recorder: " in result.stdout
    # the pages read the DistributedDataParallel wrapper's names (module.stem.conv, ...) as the net's own
    acc = EventAccumulator(str(tmp_path / "runs" / "ddp"), size_guidance={"tensors": 0})
    acc.Reload()
    page = acc.Tensors("cnn/02 what the health view shows")[0].tensor_proto.string_val[0].decode()
    assert "kept no" not in page and "`module.layers.1.relu`" in page
    page = acc.Tensors("cnn/01 the same rule, per layer at depth")[0].tensor_proto.string_val[0].decode()
    assert "`module.stem.conv.weight[" in page and "**no**" not in page


def test_a_signal_keeps_the_cnn_run_written_and_marked_stopped(tmp_path):
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "nn_lesson", "bridge", "--model", "cnn", "--epochs", "10000",
                             "--name", "s", "--logdir", str(tmp_path / "runs")], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch   2/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err
    folder = tmp_path / "runs" / "s"
    meta = json.loads((folder / "bridge.json").read_text())
    assert meta["stopped"].startswith("interrupted") and len(meta["heldout_accuracy_by_epoch"]) >= 2
    assert len(SnapshotLog.load(folder / "statistics.npz")) >= 44 and (folder / "snapshots.npz").is_file()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["s"]


# ---- in a browser: the runs the README's commands make, in the Lesson tab (Debian's chromium, a real tensorboard) ----
SHOTS = __import__("pathlib").Path(__file__).parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    """`bridge --model cnn` and `--lr 5` (5 epochs each) under a real tensorboard, a 1280x720 chromium page."""
    from conftest import need_program
    from nn_lesson.lesson.board.serve import start_tensorboard
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings playwright")
    chromium_path = need_program("chromium")
    root = tmp_path_factory.mktemp("cnn-tab")
    for extra in (["--name", "cnn"], ["--lr", "5", "--name", "cnn-lr-high"]):
        result = run_cli("bridge", "--model", "cnn", "--epochs", "5", "--quiet", "--logdir", str(root / "runs"),
                         *extra, cwd=root, timeout=300)
        assert result.returncode == 0, result.stderr
    proc, url = start_tensorboard(root / "runs")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            yield url, page, root / "runs"
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.browser
def test_the_lesson_tab_shows_the_cnn_and_the_too_high_lr_side_by_side(tab, tmp_path):
    """The run opens as the model view (a block per recorded module, no lesson panel); vs the lr 5 run: at step 0
    its stem convolution's update ratio sits in a higher colour bin, as the two runs' own numbers say."""
    import os
    url, page, runs = tab
    page.goto(url + "#lesson&run=cnn")
    frame = page.frame_locator("iframe")
    frame.locator('#mv-blocks-svg[data-step="0"]').wait_for(timeout=60000)
    log = SnapshotLog.load(runs / "cnn" / "snapshots.npz")
    assert frame.locator("#mv-blocks-svg rect.block").count() == len(log.layers)
    frame.locator("#compare").select_option("cnn-lr-high")
    frame.locator('#mv-blocks-svg-compare[data-step="0"]').wait_for(timeout=60000)
    bins = [int(frame.locator(f'#{svg} rect.block[data-name="stem.conv"]').get_attribute("data-bin"))
            for svg in ("mv-blocks-svg", "mv-blocks-svg-compare")]
    ratios = []
    for run in ("cnn", "cnn-lr-high"):
        snap = SnapshotLog.load(runs / run / "snapshots.npz")[0]
        w = "stem.conv.weight"
        ratios.append(float((snap.after[w] - snap.before[w]).double().std(correction=0)
                            / snap.before[w].double().std(correction=0)))
    assert ratios[1] > 10 * ratios[0] and bins[1] > bins[0], (ratios, bins)
    shot = SHOTS / "bridge-cnn-vs-lr-high.png" if os.environ.get("NN_LESSON_README_SHOTS") else tmp_path / "vs.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
