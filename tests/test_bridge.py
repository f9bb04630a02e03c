"""The bridge: the same Recorder on real digits, real optimizers, capture policies, odd models."""

import sys

import pytest
import torch
from torch import nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import no_hooks_left, run_cli
from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotLog
from nn_lesson.lesson.bridge.train import BridgeConfig, MissingExtra, build_optimizer, load_digits_split, train_bridge
from nn_lesson.models import make_mlp

pytest.importorskip("sklearn")


def test_default_bridge_reaches_95_percent_on_held_out_digits():
    run = train_bridge(BridgeConfig())  # the real default path
    assert run.accuracy[-1] >= 0.95, run.accuracy
    assert len(run.heldout[1]) >= 300 and run.seconds < 60


def record(optimizer: str, steps: int = 12, policy: CapturePolicy | None = None):
    """Full capture on a digits MLP, with the test's own hook saving the real weights and optimizer
    state after every step (independent of the Recorder)."""
    x, y, _, _ = load_digits_split(0, 0.2)
    torch.manual_seed(0)
    model = make_mlp([64, 16, 10])
    opt = build_optimizer(BridgeConfig(optimizer=optimizer), model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    seen = []
    opt.register_step_post_hook(lambda o, a, k: seen.append((
        {n: p.detach().clone() for n, p in model.named_parameters()},
        {n: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in o.state[p].items()}
         for n, p in model.named_parameters()})))
    with Recorder(model, opt, loss_fn, policy=policy) as rec:
        for i in range(steps):
            xb, yb = x[i * 32:(i + 1) * 32], y[i * 32:(i + 1) * 32]
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    return rec.log, opt, seen


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_update_is_exactly_the_change_in_the_weights(optimizer):
    log, _, seen = record(optimizer)
    for i, snap in enumerate(log):
        weights_after, _ = seen[i]
        for name in log.param_names:
            assert torch.equal(snap.after[name], weights_after[name])
            assert torch.equal(snap.update[name], snap.after[name] - snap.before[name])
            if i:
                assert torch.equal(snap.before[name], seen[i - 1][0][name])


def test_sgd_and_momentum_updates_follow_their_rules():
    log, opt, _ = record("sgd")
    lr = opt.param_groups[0]["lr"]
    for snap in log:
        for n in log.param_names:
            assert torch.allclose(snap.update[n], -lr * snap.grads[n], atol=1e-7)
    log, opt, _ = record("momentum")
    lr, mu = opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    buffers = {n: None for n in log.param_names}
    for snap in log:  # the momentum buffer by hand, from the captured gradients alone
        for n in log.param_names:
            g = snap.grads[n].double()
            buffers[n] = g if buffers[n] is None else mu * buffers[n] + g
            assert torch.allclose(snap.update[n].double(), -lr * buffers[n], rtol=1e-4, atol=1e-7)


def test_adam_update_equals_the_rule_recomputed_from_optimizer_state():
    log, opt, seen = record("adam")
    group = opt.param_groups[0]
    lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
    for i, snap in enumerate(log):
        _, state = seen[i]
        for n in log.param_names:
            s = state[n]
            t = float(s["step"])
            m_hat = s["exp_avg"].double() / (1 - beta1 ** t)
            v_hat = s["exp_avg_sq"].double() / (1 - beta2 ** t)
            expected = -lr * m_hat / (v_hat.sqrt() + eps)
            # float32 weights: after − before is exact to a few ulps of the weight (~3e-8 at |w| ~ 0.3)
            assert torch.allclose(snap.update[n].double(), expected, rtol=1e-4, atol=1e-7), (i, n)
            plain = -lr * snap.grads[n]
            assert not torch.allclose(snap.update[n], plain)  # and it is not -lr × grad


def test_statistics_policy_equals_statistics_of_a_full_capture():
    full, _, _ = record("sgd", steps=20)
    stats, _, _ = record("sgd", steps=20, policy=CapturePolicy.stats(bins=10))
    assert torch.equal(stats.loss, full.loss)
    for layer in full.layers:
        a = full.activation(layer).flatten(1)
        assert torch.allclose(stats.stat(f"act:{layer}", "mean"), a.mean(1), atol=1e-6)
        assert torch.allclose(stats.stat(f"act:{layer}", "max"), a.amax(1))
        assert torch.allclose(stats.stat(f"act_grad:{layer}", "std"), full.activation_grad(layer).flatten(1).std(1, correction=0), rtol=1e-3, atol=1e-7)
    for n in full.param_names:
        u = full.param(n, "update").flatten(1)
        assert torch.allclose(stats.stat(f"{n}:update", "norm"), u.norm(dim=1), rtol=1e-5)
        g = full.param(n, "grad").flatten(1)
        assert torch.allclose(stats.stat(f"{n}:grad", "min"), g.amin(1))
        for row in (0, 7, 19):
            expected = torch.histc(g[row], 10, float(g[row].min()), float(g[row].max()))
            assert torch.equal(stats.stat(f"{n}:grad", "hist")[row], expected)


def test_statistics_memory_grows_by_the_statistics_only():
    def log_after(steps):
        torch.manual_seed(0)
        model = make_mlp([64, 32, 10])
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = nn.CrossEntropyLoss()
        x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
        with Recorder(model, opt, loss_fn, policy=CapturePolicy.stats(bins=16)) as rec:
            for _ in range(steps):
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
        return rec.log
    small, big = log_after(50), log_after(500)
    stats_row = sum(c.row_shape[0] * c.dtype.itemsize for n, c in big.columns.items() if n.startswith("stats:"))
    per_step = (big.nbytes - small.nbytes) / 450
    raw_per_step = (64 * (32 + 32 + 10) * 2 + 64 * 64 + 3 * sum(p.numel() for p in model_params())) * 4
    assert per_step < 2.5 * (stats_row + 64)  # statistics + four scalars, with chunk slack
    assert per_step < raw_per_step / 20


def model_params():
    return make_mlp([64, 32, 10]).parameters()


def test_a_module_used_twice_records_each_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 4)

        def forward(self, x):
            return self.layer(torch.relu(self.layer(x)))
    model = Twice()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 4)
    w, b = model.layer.weight.detach().clone(), model.layer.bias.detach().clone()
    with Recorder(model, opt) as rec:
        model(x).sum().backward()
        opt.step()
    first = x @ w.T + b
    snap = rec.log[0]
    assert torch.equal(snap.activations["layer"], first)
    assert torch.allclose(snap.activations["layer#1"], first.relu() @ w.T + b)
    assert torch.equal(snap.act_grads["layer#1"], torch.ones(2, 4))
    assert rec.report().calls == {"layer": 2} and "layer ×2" in rec.report().line()
    assert no_hooks_left(model, opt)


def test_a_frozen_layer_is_recorded_correctly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(5, 6), torch.randint(0, 3, (5,))
    frozen = model[0].weight.clone()
    with Recorder(model, opt, loss_fn) as rec:
        for _ in range(3):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    log = rec.log
    assert log.param_names == ["2.weight", "2.bias"]
    assert torch.equal(model[0].weight, frozen)
    # autograd computes no gradient below the first trainable layer, and the log says so by omission
    assert set(log[0].act_grads) == {"2"}
    assert torch.equal(log[0].activations["0"], x @ frozen.T + model[0].bias)
    for snap in log:
        assert torch.allclose(snap.update["2.weight"], -0.1 * snap.grads["2.weight"], atol=1e-7)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingExtra, match=r"pip install 'nn-lesson\[bridge\]'"):
        load_digits_split(0, 0.2)


def test_bridge_cli_writes_the_lesson_layout(tmp_path):
    result = run_cli("bridge", "--epochs", "3", "--optimizer", "adam", "--name", "b", "--quiet",
                     "--logdir", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    acc = EventAccumulator(str(tmp_path / "runs/b"), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "digits/held-out predictions" in tags["images"]
    assert {"bridge/01 the training loop, line by line", "bridge/02 the update rule"} <= set(tags["tensors"])
    assert any(t.startswith("6 health/update-to-weight ratio") for t in tags["scalars"])
    assert "weights/hidden.weight" in tags["histograms"] and "activations/relu" in tags["histograms"]  # named layers
    page = acc.Tensors("bridge/02 the update rule")[0].tensor_proto.string_val[0].decode()
    assert "adam" in page and "median ratio" in page
    # issue 13's bridge dashboards: guesses after every epoch, HParams, PR curves, the projector
    assert len(acc.Images("digits/held-out predictions")) == 3
    assert set(acc.PluginTagToContent("hparams")) >= {"_hparams_/experiment", "_hparams_/session_start_info"}
    assert sorted(acc.PluginTagToContent("pr_curves")) == sorted(f"pr curves/digit {d}" for d in range(10))
    assert "hparams/final held-out accuracy" in tags["scalars"]
    config = (tmp_path / "runs/b/projector_config.pbtxt").read_text()
    assert config.count("tensor_name") == 2  # the hidden layer before and after training
    record = SnapshotLog.load(tmp_path / "runs/b/snapshots.npz")
    assert len(record) > 0
