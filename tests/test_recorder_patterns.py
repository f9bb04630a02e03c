"""Each pattern users bring, run twice from the same state: bare, with the numbers its optimizer used
collected by hand (clones taken just before opt.step()), and recorded. The recorded numbers must equal
the hand-collected ones, every optimizer step must be a row, both runs must end bit-identical, and no
hook may remain."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import no_hooks_left
from nn_lesson.hooks import Recorder

STEPS = 6


class Hand:
    """What the bare loop collects by its own code: loss, lr, weights and gradients just before step()."""

    def __init__(self, model, opt):
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.opt = opt
        self.loss, self.lr, self.before, self.grads, self.after, self.norm, self.inputs = [], [], [], [], [], [], []

    def saw_loss(self, loss):
        self.loss.append(loss.detach().clone())

    def saw_inputs(self, x):
        self.inputs.append(x.clone())

    def saw_norm(self, norm):
        self.norm.append(norm.clone())

    def before_step(self):
        self.lr.append(self.opt.param_groups[0]["lr"])
        self.before.append({n: p.detach().clone() for n, p in self.named})
        self.grads.append({n: p.grad.clone() for n, p in self.named})

    def after_step(self):
        self.after.append({n: p.detach().clone() for n, p in self.named})


class Nobody:
    """The recorded run's stand-in: collects nothing, touches nothing."""

    def __getattr__(self, name):
        return lambda *args: None


def run_both(build, loop, steps=STEPS, loss_fn=None, **recorder_args):
    """build() -> (model, opt, extras); loop(model, opt, extras, hand, step). Returns (hand, log, report)."""
    torch.manual_seed(0)
    model, opt, extras = build()
    hand = Hand(model, opt)
    for step in range(steps):
        loop(model, opt, extras, hand, step)
    bare = {n: p.detach().clone() for n, p in model.state_dict().items()}

    torch.manual_seed(0)
    model, opt, extras = build()
    with Recorder(model, opt, extras.get("loss_fn"), **recorder_args) as rec:
        for step in range(steps):
            loop(model, opt, extras, Nobody(), step)
    recorded = {n: p.detach().clone() for n, p in model.state_dict().items()}
    assert all(torch.equal(bare[n], recorded[n]) for n in bare), "recorded run ended different from the bare run"
    assert no_hooks_left(model, opt)
    if extras.get("loss_fn") is not None:
        assert no_hooks_left(extras["loss_fn"])
    log = rec.log
    assert len(log) == steps, rec.report()
    for i, snap in enumerate(log):
        assert snap.step == i
        assert snap.lr == hand.lr[i]
        for name in hand.grads[i]:
            assert torch.equal(snap.before[name], hand.before[i][name]), (i, name)
            assert torch.equal(snap.grads[name], hand.grads[i][name]), (i, name)
            assert torch.equal(snap.after[name], hand.after[i][name]), (i, name)
            assert torch.equal(snap.update[name], hand.after[i][name] - hand.before[i][name])
    if hand.loss:
        assert torch.equal(log.loss, torch.stack(hand.loss).to(log.loss.dtype)), (log.loss, hand.loss)
    if hand.inputs:
        for i, snap in enumerate(log):
            assert torch.equal(snap.inputs, hand.inputs[i])
    return hand, log, rec.report()


def data(n=8, d=5, classes=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def mlp(*layers):
    return nn.Sequential(*layers)


def plain_step(model, opt, x, y, hand, loss_of=F.cross_entropy):
    opt.zero_grad()
    hand.saw_inputs(x)
    loss = loss_of(model(x), y)
    hand.saw_loss(loss)
    loss.backward()
    hand.before_step()
    opt.step()
    hand.after_step()


def sgd_build(model_fn=lambda: mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)), opt_fn=None, **extras):
    def build():
        model = model_fn()
        opt = (opt_fn or (lambda ps: torch.optim.SGD(ps, lr=0.1)))([p for p in model.parameters() if p.requires_grad])
        return model, opt, dict(extras)
    return build


# ---- 1. functional losses ----
@pytest.mark.parametrize("loss_of", [F.cross_entropy, lambda out, y: F.mse_loss(out, F.one_hot(y, 3).float()),
                                     lambda out, y: F.cross_entropy(out, y) + 0.01 * out.pow(2).mean()])
def test_functional_loss_is_recorded_from_the_backward_root(loss_of):
    x, y = data()
    hand, log, report = run_both(sgd_build(), lambda m, o, e, h, s: plain_step(m, o, x[s % 4 * 2:][:2], y[s % 4 * 2:][:2], h, loss_of))
    assert not report.not_seen


def test_a_loss_module_still_gives_targets():
    x, y = data()
    loss_fn = nn.CrossEntropyLoss()
    _, log, _ = run_both(sgd_build(loss_fn=loss_fn), lambda m, o, e, h, s: plain_step(m, o, x, y, h, e["loss_fn"]))
    assert torch.equal(log[0].targets, y)


# ---- 2. a module called several times ----
def test_a_module_called_twice_is_recorded_per_call_with_gradients():
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.act = nn.Linear(5, 6), nn.Linear(6, 3), nn.Tanh()

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))
    x, y = data()
    _, log, report = run_both(sgd_build(Reuse), lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    snap = log[0]
    h = torch.tanh(snap.activations["a"])
    assert torch.equal(snap.activations["act"], h)
    assert torch.equal(snap.activations["act#1"], torch.tanh(snap.activations["b"]))
    out = snap.activations["act#1"]
    dout = (out.softmax(1) - F.one_hot(y, 3)) / len(y)
    assert torch.allclose(snap.act_grads["act#1"], dout, atol=1e-7)
    assert torch.allclose(snap.act_grads["b"], dout * (1 - out ** 2), atol=1e-7)
    assert report.calls["act"] == 2 and "act#1" in log.layers


# ---- 3. forwards that are not the step's ----
def test_evaluation_and_extra_forwards_never_replace_the_training_forward():
    x, y = data()
    xv = torch.randn(3, 5)

    def loop(m, o, e, hand, s):
        m(xv)                                  # grad enabled, but no backward reaches it
        o.zero_grad()
        hand.saw_inputs(x[:4])
        loss = F.cross_entropy(m(x[:4]), y[:4])
        hand.saw_loss(loss)
        loss.backward()
        with torch.no_grad():
            m(xv)                              # accuracy between backward and step
        with torch.inference_mode():
            m(xv)
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert log.batch_size.tolist() == [4] * STEPS
    assert set(report.skipped.values()) == {STEPS}  # each kind once per step
    assert len(report.skipped) == 3


def test_an_evaluation_between_forward_and_backward_keeps_the_functional_loss():
    """out = model(x); loss = F.cross_entropy(out, y); an eval under no_grad / inference_mode; then backward."""
    x, y = data()
    xv = torch.randn(3, 5)

    def loop(m, o, e, hand, s):
        o.zero_grad()
        hand.saw_inputs(x[:4])
        loss = F.cross_entropy(m(x[:4]), y[:4])
        hand.saw_loss(loss)
        with torch.no_grad():
            m(xv)
        with torch.inference_mode():
            m(xv)
        loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert len(log.loss) == STEPS and not any("loss" in what for what in report.not_seen)


# ---- 4. the patterns of real training code ----
def test_gradient_accumulation_records_the_summed_gradient_and_the_first_forward():
    x, y = data(12)

    def loop(m, o, e, hand, s):
        o.zero_grad()
        for k in range(3):
            xb, yb = x[4 * k: 4 * k + 4], y[4 * k: 4 * k + 4]
            loss = F.cross_entropy(m(xb), yb) / 3
            if k == 0:
                hand.saw_inputs(xb)
                hand.saw_loss(loss)
            loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert report.skipped and all("another forward" in why for why in report.skipped)


def test_clipping_records_the_clipped_gradient_and_the_norm_before():
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        loss = F.cross_entropy(m(x) * 20, y)
        hand.saw_loss(loss)
        loss.backward()
        hand.saw_norm(torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5))
        hand.before_step()
        o.step()
        hand.after_step()
    hand, log, report = run_both(sgd_build(), loop)
    norms = log.grad_norm
    assert torch.isnan(norms[0])  # the first clipped step is where the recorder learns of it: reported
    assert torch.allclose(norms[1:], torch.stack(hand.norm[1:]), rtol=1e-6)
    assert any("before clipping at step 0" in what for what in report.not_seen)
    assert all(float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in snap.grads.values()]))) < 0.5 + 1e-5
               for snap in log)


def test_norm_without_clipping_is_the_recorded_gradients_norm():
    x, y = data()
    _, log, report = run_both(sgd_build(), lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert torch.allclose(log.grad_norm, torch.linalg.vector_norm(log.values("param_grad"), dim=1))
    assert not report.not_seen


def test_scheduler_lr_per_step():
    x, y = data()

    def build():
        model = mlp(nn.Linear(5, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        return model, opt, {"sched": torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)}

    def loop(m, o, e, hand, s):
        plain_step(m, o, x, y, hand)
        e["sched"].step()
    hand, log, _ = run_both(build, loop)
    assert log.lr.tolist() == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


@pytest.mark.parametrize("max_iter", [1, 4])
def test_lbfgs_closure_records_the_gradient_at_the_steps_start(max_iter):
    x, y = data()

    def build():
        model = mlp(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
        return model, torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=max_iter), {}

    def loop(m, o, e, hand, s):
        calls = []

        def closure():
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            if not calls:
                hand.saw_loss(loss)
                hand.before_step()  # weights and gradient at the step's starting point
            calls.append(1)
            return loss
        o.step(closure)
        hand.after_step()
    _, log, report = run_both(build, loop)
    if max_iter > 1:
        assert any("another forward" in why for why in report.skipped)


@pytest.mark.parametrize("opt_fn", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)])
def test_stateful_optimizers_update_is_after_minus_before(opt_fn):
    x, y = data()
    run_both(sgd_build(opt_fn=opt_fn), lambda m, o, e, h, s: plain_step(m, o, x, y, h))


def test_frozen_parameters_are_left_out():
    x, y = data()

    def model_fn():
        model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        model[0].weight.requires_grad_(False)
        return model
    _, log, _ = run_both(sgd_build(model_fn), lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert log.param_names == ["0.bias", "2.weight", "2.bias"]


def test_float64():
    x, y = data(dtype=torch.float64)
    _, log, _ = run_both(sgd_build(lambda: mlp(nn.Linear(5, 6), nn.Sigmoid(), nn.Linear(6, 3)).double()),
                         lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert log[0].grads["0.weight"].dtype == torch.float64 and log.loss.dtype == torch.float64


def test_bfloat16_autocast_on_cpu():
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
            loss = F.cross_entropy(out, y)
        hand.saw_loss(loss)
        loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, _ = run_both(sgd_build(), loop)
    assert log[0].activations["0"].dtype == torch.bfloat16 and log[0].grads["0.weight"].dtype == torch.float32


def test_in_place_activations():
    x, y = data()
    _, log, _ = run_both(sgd_build(lambda: mlp(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))),
                         lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert (log[0].activations["0"] < 0).any()  # the Linear's own output, before the ReLU overwrote it


def test_dropout_leaves_the_random_stream_alone():
    x, y = data()

    def loop(m, o, e, hand, s):
        plain_step(m, o, x, y, hand)
        hand.saw_norm(torch.rand(1))  # the stream's next number: run_both compares final weights
    _, log, _ = run_both(sgd_build(lambda: mlp(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))), loop)
    assert (log[0].activations["2"] == 0).float().mean() > 0.2


def test_nested_residual_model_returning_a_dict_and_a_tuple():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(6, 6), nn.GELU())

        def forward(self, h):
            return h + self.inner(h)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.blocks, self.head = nn.Linear(5, 6), nn.Sequential(Block(), Block()), nn.Linear(6, 3)

        def forward(self, x):
            h = self.blocks(self.stem(x))
            return {"logits": self.head(h), "features": h}
    x, y = data()
    _, log, report = run_both(sgd_build(Net), lambda m, o, e, h, s: plain_step(m, o, x, y, h,
                                                                               lambda out, y: F.cross_entropy(out["logits"], y)))
    assert "blocks.1.inner.1" in log.layers and log.has("outputs:logits")
    assert torch.equal(log.values("outputs:logits")[0], log[0].activations["head"])
    assert set(log[0].act_grads) >= {"head", "blocks.0.inner.0", "stem"}

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, x):
            out = self.lin(x)
            return out, out.detach().argmax(1)
    _, log, _ = run_both(sgd_build(Pair), lambda m, o, e, h, s: plain_step(m, o, x, y, h,
                                                                         lambda out, y: F.cross_entropy(out[0], y)))
    assert log.has("outputs:0") and log.has("outputs:1")


def test_an_exception_inside_the_block_removes_every_hook():
    x, y = data()
    model = mlp(nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError):
        with Recorder(model, opt) as rec:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)  # the backward watch is active from here
            raise ValueError("user code failed")
    assert no_hooks_left(model, opt)
    assert torch.overrides._get_current_function_mode_stack() == []  # the backward watch is gone too
    assert len(rec.log) == 0


def test_torch_compile_is_refused_in_one_line():
    model = mlp(nn.Linear(5, 3))
    with pytest.raises(RuntimeError, match="torch.compile'd model") as err:
        Recorder(torch.compile(model), torch.optim.SGD(model.parameters(), lr=0.1))
    assert "\n" not in str(err.value)


def test_a_recorder_never_entered_refuses_instead_of_an_empty_log():
    model = mlp(nn.Linear(5, 3))
    rec = Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(RuntimeError, match="never entered"):
        rec.log


def test_report_says_what_ran_and_what_was_skipped():
    x, y = data()
    model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3), nn.Softmax(1))  # Softmax never called below
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt) as rec:
        for _ in range(2):
            opt.zero_grad()
            F.nll_loss(model(x).log(), y).backward()
            opt.step()
            with torch.no_grad():
                model(x)
    report = rec.report()
    assert report.recorded == report.steps == 2 and report.complete
    assert report.calls == {"0": 1, "1": 1, "2": 1, "3": 1}
    line = report.line()
    assert "\n" not in line and "2 of 2 steps recorded" in line and "2 forwards skipped" in line
    assert "no_grad" in str(report)
