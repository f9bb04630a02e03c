"""Your own model: recorded by the Recorder in a plain loop or inside a real PyTorch Lightning Trainer, written
with write_tensorboard, read back with TensorBoard's own EventMultiplexer and through the Lesson tab's routes."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.backend.event_processing import event_multiplexer
from tensorboard.plugins import base_plugin

from nn_lesson import Recorder, SnapshotLog, write_tensorboard
from nn_lesson.lesson.board.plugin import LessonPlugin
from nn_lesson.lesson.run.folder import RunDirError

LR = 0.1


class ConvNet(nn.Module):
    """A user's own small conv net: 8 filters of 3x3 on 8x8 images, ReLU, a linear head to 3 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.act = nn.ReLU()
        self.head = nn.Linear(8 * 6 * 6, 3)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))


def data(n: int = 40, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def plain_loop(model: nn.Module, epochs: int = 2) -> SnapshotLog:
    """The loop people write, recorded."""
    loader = data()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with Recorder(model, opt, steps_per_epoch=len(loader)) as rec:
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
    return rec.log


@pytest.fixture(scope="module")
def recorded():
    torch.manual_seed(0)
    return plain_loop(ConvNet())


# ---- write_tensorboard ----
def test_your_conv_net_reaches_tensorboard_named_by_its_modules(recorded, tmp_path):
    folder = write_tensorboard(recorded, tmp_path / "runs" / "my-convnet", hparams={"lr": LR, "net": "conv"})
    assert folder == tmp_path / "runs" / "my-convnet" and (folder / "snapshots.npz").is_file()
    mux = event_multiplexer.EventMultiplexer(size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    mux.AddRunsFromDirectory(str(tmp_path / "runs"))
    mux.Reload()
    acc = mux.GetAccumulator("my-convnet")
    tags = acc.Tags()
    loss = acc.Scalars("1 loss/this step's batch")
    assert [e.value for e in loss] == pytest.approx(recorded.loss.tolist()) and len(loss) == len(recorded) == 10
    for module in ("conv", "head"):                                 # named by module path
        for what in ("weight", "weight.grad", "weight.update", "bias", "bias.grad"):
            assert f"{module}/{what}" in tags["histograms"], (module, what)
    assert "conv/output" in tags["histograms"] and "act/output.grad" in tags["histograms"]
    assert "6 health/update-to-weight ratio conv.weight" in tags["scalars"]
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    before = (folder / "snapshots.npz").read_bytes()
    again = write_tensorboard(recorded, folder)                    # never overwrites: the name is numbered
    assert again == folder.with_name("my-convnet-2") and (folder / "snapshots.npz").read_bytes() == before
    with pytest.raises(RunDirError, match="plain folder name"):
        write_tensorboard(recorded, tmp_path / "runs" / ".hidden")


def test_statistics_of_every_step_beside_full_rows_reach_tensorboard(tmp_path):
    """CapturePolicy.stats_and_every(3): the loss and health scalars at every step from rec.stats_log, the
    histograms at the full rows' steps, statistics.npz beside snapshots.npz, read back by TensorBoard's reader."""
    from nn_lesson.hooks import CapturePolicy
    torch.manual_seed(0)
    model, loader = ConvNet(), data()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with Recorder(model, opt, policy=CapturePolicy.stats_and_every(3)) as rec:
        for _ in range(2):
            for x, y in loader:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
    folder = write_tensorboard(rec.log, tmp_path / "runs" / "both", stats=rec.stats_log)
    assert SnapshotLog.load(folder / "statistics.npz").step.tolist() == list(range(10))
    mux = event_multiplexer.EventMultiplexer(size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    mux.AddRunsFromDirectory(str(tmp_path / "runs"))
    mux.Reload()
    acc = mux.GetAccumulator("both")
    loss = acc.Scalars("1 loss/this step's batch")
    assert [e.step for e in loss] == list(range(10))                        # every step, once
    assert [e.value for e in loss] == pytest.approx(rec.stats_log.loss.tolist())
    assert [e.step for e in acc.Histograms("conv/weight")] == [0, 3, 6, 9]
    assert len(acc.Scalars("6 health/update-to-weight ratio conv.weight")) == 10


def test_a_statistics_log_is_written_too(tmp_path):
    from nn_lesson.hooks import CapturePolicy
    torch.manual_seed(0)
    model, loader = ConvNet(), data()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    with Recorder(model, opt, policy=CapturePolicy.stats()) as rec:
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    folder = write_tensorboard(rec.log, tmp_path / "stats-run")
    mux = event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    scalars = mux.GetAccumulator("stats-run").Tags()["scalars"]
    assert "1 loss/this step's batch" in scalars and "6 health/update-to-weight ratio head.weight" in scalars
    assert (folder / "snapshots.npz").is_file()


def test_the_lesson_tab_draws_your_model_as_its_layers(recorded, tmp_path):
    write_tensorboard(recorded, tmp_path / "runs" / "mine")
    app = application.TensorBoardWSGI([LessonPlugin(base_plugin.TBContext(logdir=str(tmp_path / "runs")))])
    client = werkzeug_test.Client(app, wrappers.Response)
    runs = client.get("/data/plugin/lesson/runs").get_json()
    assert runs["details"] == [{"run": "mine", "kind": "model", "modified": runs["details"][0]["modified"]}]
    run = client.get("/data/plugin/lesson/run", query_string={"run": "mine"})
    assert run.status_code == 200
    info = run.get_json()
    assert info["kind"] == "model" and info["message"].startswith("your model")
    assert [layer["name"] for layer in info["layers"]] == ["conv", "act", "head"]
    step = client.get("/data/plugin/lesson/step", query_string={"run": "mine", "step": "4"}).get_json()
    conv = next(b for b in step["blocks"] if b["name"] == "conv")
    assert conv["shape"] == [8, 1, 3, 3]
    assert conv["summary"]["weight"]["norm"] == pytest.approx(float(recorded[4].before["conv.weight"].double().norm()))
    assert conv["summary"]["output"]["max"] == pytest.approx(float(recorded[4].activations["conv"].max()))
    assert step["loss"] == pytest.approx(float(recorded.loss[4]))


# ---- inside PyTorch Lightning ----
lightning = pytest.importorskip("lightning", reason="pip install -e '.[test]' brings lightning")


class LitConvNet(lightning.LightningModule):
    def __init__(self, manual: bool = False):
        super().__init__()
        self.net = ConvNet()
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def fit(module, **trainer_args):
    from nn_lesson.hooks.lightning import RecorderCallback
    from nn_lesson.lesson.board.lightning import TensorBoardRecorderCallback
    run_dir = trainer_args.pop("run_dir", None)
    callback = RecorderCallback() if run_dir is None else TensorBoardRecorderCallback(run_dir)
    trainer = lightning.Trainer(accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                **{"max_epochs": 2, **trainer_args})
    trainer.fit(module, data())
    return callback


def no_wrappers_left(module: nn.Module) -> bool:
    return all("forward" not in m.__dict__ for m in module.modules()) and not any(
        m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def test_a_lightning_fit_is_recorded_exactly_as_the_plain_loop(recorded, tmp_path):
    torch.manual_seed(0)
    module = LitConvNet()
    callback = fit(module, run_dir=tmp_path / "runs" / "lit")
    log = callback.log
    assert len(log) == len(recorded) == 10 and callback.report().complete, callback.report().line()
    assert log.param_names == ["net." + n for n in recorded.param_names]
    for i in range(len(log)):
        for name in log.param_names:
            snap = log[i]
            assert torch.allclose(snap.update[name], -LR * snap.grads[name], atol=1e-7)   # SGD's update
            if i:
                assert torch.equal(snap.before[name], log[i - 1].after[name])           # nothing in between
            plain = recorded[i]
            assert torch.equal(snap.before[name], plain.before[name[4:]]), (i, name)
            assert torch.equal(snap.grads[name], plain.grads[name[4:]]), (i, name)
        assert float(log.loss[i]) == float(recorded.loss[i])
        assert torch.equal(log[i].activations["net.conv"], recorded[i].activations["conv"])
    assert no_wrappers_left(module)
    assert (tmp_path / "runs" / "lit" / "snapshots.npz").is_file()             # written by rank 0


def test_lightning_accumulation_clipping_and_bf16(tmp_path):
    torch.manual_seed(0)
    module = LitConvNet()
    callback = fit(module, accumulate_grad_batches=2, gradient_clip_val=0.05, precision="bf16-mixed")
    log = callback.log
    assert len(log) == 2 * 3                       # 5 batches an epoch, a step every 2 (the last one alone)
    batches = [x for x, _ in data()]
    firsts = [batches[i] for i in (0, 2, 4)] * 2   # each step's first micro-batch, the README's rule
    for i in range(len(log)):
        assert torch.equal(log[i].inputs, firsts[i]), i
    from nn_lesson.hooks.recorder import EXTRA
    assert callback.report().skipped.get(EXTRA) == 4   # the second micro-batch of 4 steps, counted
    assert log.epoch.tolist() == [0, 0, 0, 1, 1, 1]    # 5 batches at 2 a step: 3 steps an epoch, rounded up
    for i in range(len(log)):
        grads = torch.cat([log[i].grads[n].reshape(-1) for n in log.param_names])
        assert float(grads.norm()) <= 0.05 * (1 + 1e-5)              # the clipped gradient is what SGD used
        for name in log.param_names:
            assert torch.allclose(log[i].update[name], -LR * log[i].grads[name], atol=1e-7)
    assert no_wrappers_left(module)


def test_lightning_manual_optimization_is_recorded(tmp_path):
    torch.manual_seed(0)
    module = LitConvNet(manual=True)
    callback = fit(module)
    log = callback.log
    assert len(log) == 10
    report = callback.report()
    assert report.complete and not report.skipped, report          # the forward and backward were seen
    batches = [x for x, _ in data()] * 2
    for i in range(len(log)):
        assert torch.equal(log[i].inputs, batches[i]) and log[i].loss is not None and "net.conv" in log[i].activations
    for i in range(1, len(log)):
        for name in log.param_names:
            assert torch.equal(log[i].before[name], log[i - 1].after[name])
            assert torch.allclose(log[i].update[name], -LR * log[i].grads[name], atol=1e-7)
    assert no_wrappers_left(module)


class LitFailing(LitConvNet):
    def training_step(self, batch, batch_idx):
        if self.global_step == 3:
            raise ValueError("the user's own error at step 3")
        return super().training_step(batch, batch_idx)


def test_a_failing_lightning_fit_leaves_no_hook_and_keeps_the_steps_before():
    torch.manual_seed(0)
    module = LitFailing()
    from nn_lesson.hooks.lightning import RecorderCallback
    callback = RecorderCallback()
    trainer = lightning.Trainer(accelerator="cpu", devices=1, callbacks=[callback], logger=False, max_epochs=2,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="own error"):
        trainer.fit(module, data())
    assert no_wrappers_left(module) and len(callback.log) == 3


def test_the_bridge_in_lightning_records_the_plain_loops_rows():
    """The digits MLP by a Trainer with the same seed: the same recorded rows as the plain loop, bit for bit."""
    pytest.importorskip("sklearn", reason="the bridge's digits come with scikit-learn")
    from nn_lesson.lesson.bridge.lightning_run import largest_difference, lightning_page, train_bridge_lightning
    from nn_lesson.lesson.bridge.train import BridgeConfig, train_bridge
    config = BridgeConfig(optimizer="sgd", epochs=2, policy="full")
    plain, lit = train_bridge(config).log, train_bridge_lightning(config)
    assert len(plain) == len(lit) == 2 * 23
    for i in (0, 1, 22, 23, 45):
        for name in plain.param_names:
            assert torch.equal(plain[i].before[name], lit[i].before["net." + name]), (i, name)
            assert torch.equal(plain[i].grads[name], lit[i].grads["net." + name]), (i, name)
        assert float(plain.loss[i]) == float(lit.loss[i])
    assert largest_difference(plain, lit) == {"weights": 0.0, "gradients": 0.0, "loss": 0.0}
    title, page = lightning_page(plain, lit)
    assert "to the last bit" in page and "`optimizer.step()`" in page
    changed = SnapshotLog.from_file_contents(*_shifted(lit))
    assert "to the last bit" not in lightning_page(plain, changed)[1]     # the verdict follows the numbers


def _shifted(log: SnapshotLog):
    """The log's file contents with one loss nudged, as if the two runs had differed."""
    header, arrays = log.header(), {k: v.numpy().copy() for k, v in log.arrays().items()}
    arrays["loss"][3] += 1e-3
    return header, arrays


class LitNoForward(lightning.LightningModule):
    """The common shape the Recorder used to miss: no forward, training_step calls self.net(x)."""

    def __init__(self, split: bool = False):
        super().__init__()
        if split:   # two submodules called one after the other: nothing the Recorder can watch as one forward
            self.body, self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), nn.Linear(16, 3)
        else:
            self.net = ConvNet()

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x) if hasattr(self, "net") else self.head(self.body(x))
        return nn.functional.cross_entropy(out, y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def test_lightning_training_step_calling_a_submodule_is_recorded(recorded):
    torch.manual_seed(0)
    module = LitNoForward()
    callback = fit(module)
    report = callback.report()
    assert report.complete and report.calls == {"conv": 1, "act": 1, "head": 1}, report.line()
    assert callback.log.param_names == recorded.param_names
    assert torch.equal(callback.log[9].grads["head.weight"], recorded[9].grads["head.weight"])
    assert no_wrappers_left(module)


def test_lightning_with_no_forward_to_watch_is_refused_at_the_first_step():
    torch.manual_seed(0)
    module = LitNoForward(split=True)
    with pytest.raises(RuntimeError, match="ran no forward of the recorded module"):
        fit(module)
    assert no_wrappers_left(module)
