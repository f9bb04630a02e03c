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
from nn_lesson.hooks import Recorder, SnapshotLog
from nn_lesson.hooks.recorder import SKIPPED

STEPS = 6


class Hand:
    """What the bare loop collects by its own code: loss, lr, weights and gradients just before step()."""

    def __init__(self, model, opt):
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.opt = opt
        self.loss, self.lr, self.before, self.grads, self.after, self.norm, self.inputs = [], [], [], [], [], [], []
        self.scales = []

    def saw_loss(self, loss):
        self.loss.append(loss.detach().clone())

    def saw_inputs(self, x):
        self.inputs.append(x.clone())

    def saw_norm(self, norm):
        self.norm.append(norm.clone())

    def stepped(self):
        """The parameters the optimizer holds now (a group may be added mid-training)."""
        held = {id(p) for group in self.opt.param_groups for p in group["params"]}
        return [(n, p) for n, p in self.named if id(p) in held and (p.requires_grad or p.grad is not None)]

    def saw_scale(self, scale):
        self.scales.append(scale)

    def before_step(self, grad_factor=None):
        """grad_factor: what GradScaler.step will multiply the gradients by before the optimizer reads them."""
        self.lr.append(self.opt.param_groups[0]["lr"])
        self.before.append({n: p.detach().clone() for n, p in self.stepped()})
        grads = {n: p.grad.to_dense() if p.grad.is_sparse else p.grad.clone() for n, p in self.stepped()}
        self.grads.append({n: g * grad_factor for n, g in grads.items()} if grad_factor is not None else grads)

    def after_step(self):
        self.after.append({n: p.detach().clone() for n, p in self.stepped()})


class Nobody:
    """The recorded run's stand-in: collects nothing, touches nothing."""

    def __getattr__(self, name):
        return lambda *args: None


def same(recorded, hand):
    """Bit-equal. A log column promoted to a wider dtype (a layer .double()'d mid-training) holds the earlier
    float32 values exactly, so the hand's value is widened the same way before comparing."""
    if recorded.dtype != hand.dtype:
        hand = hand.to(recorded.dtype)
    return torch.equal(recorded, hand)


def run_both(build, loop, steps=STEPS, loss_fn=None, rows=None, **recorder_args):
    """build() -> (model, opt, extras); loop(model, opt, extras, hand, step). Returns (hand, log, report).
    rows: the optimizer steps the loop takes (all `steps` unless some iterations skip the step)."""
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
    assert len(log) == (steps if rows is None else rows) == len(hand.grads), rec.report()
    for i, snap in enumerate(log):
        assert snap.step == i
        assert snap.lr == hand.lr[i]
        for name in hand.grads[i]:
            assert same(snap.before[name], hand.before[i][name]), (i, name)
            assert same(snap.grads[name], hand.grads[i][name]), (i, name)
            assert same(snap.after[name], hand.after[i][name]), (i, name)
            assert same(snap.update[name], hand.after[i][name] - hand.before[i][name])
    if hand.loss:
        assert len(hand.loss) == len(log)
        assert all(float(a) == float(b) for a, b in zip(log.loss, hand.loss)), (log.loss, hand.loss)
    if hand.inputs:
        for i, snap in enumerate(log):
            assert same(snap.inputs, hand.inputs[i]), i
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


class KeywordModel(nn.Module):
    """Called as model(**batch) with the loss inside, as Hugging Face models are."""
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        logits = self.head(torch.tanh(self.body(input_ids * attention_mask)))
        return {"logits": logits, "loss": F.cross_entropy(logits, labels)}


def test_a_model_called_with_keywords_only_records_its_first_tensor_as_inputs():
    x, y = data()
    mask = torch.ones_like(x)

    def loop(model, opt, extras, hand, step):
        batch = {"input_ids": x[step % 4 * 2:][:2], "attention_mask": mask[:2], "labels": y[step % 4 * 2:][:2]}
        opt.zero_grad()
        hand.saw_inputs(batch["input_ids"])
        out = model(**batch)
        hand.saw_loss(out["loss"])
        out["loss"].backward()
        hand.before_step()
        opt.step()
        hand.after_step()
    hand, log, report = run_both(sgd_build(KeywordModel), loop)
    assert not report.not_seen, report
    assert log.has("outputs:logits") and log.has("outputs:loss") and list(log.batch_size) == [2] * len(log)


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


# ---- 5. loss scaling and skipped iterations ----
SCALED_MODEL = lambda: mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))  # noqa: E731


def logits_grad(out, y):
    """d cross_entropy / d logits, by its formula: what the last layer's activation gradient must be."""
    return (out.softmax(1) - F.one_hot(y, 3)) / len(y)


@pytest.mark.parametrize("functional, inplace", [(True, False), (False, False), (True, True)])
def test_grad_scaler_with_unscale_and_clipping_records_unscaled_numbers(functional, inplace):
    """GradScaler("cpu") with unscale_ and clip_grad_norm_: the gradients the optimizer used (unscaled, clipped),
    the loss and the activation gradients in the units of the unscaled loss, the scale per row, the norm
    clip_grad_norm_ returned."""
    x, y = data()
    loss_fn = None if functional else nn.CrossEntropyLoss()

    def build():  # an in-place ReLU sends activation gradients through Python tensor hooks, not retain_grad
        model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)) if inplace else SCALED_MODEL()
        return model, torch.optim.SGD(model.parameters(), lr=0.5), {"scaler": torch.amp.GradScaler("cpu"),
                                                                     "loss_fn": loss_fn}

    def loop(m, o, e, hand, s):
        scaler = e["scaler"]
        o.zero_grad()
        out = m(x)
        loss = F.cross_entropy(out, y) if functional else e["loss_fn"](out, y)
        hand.saw_loss(loss)
        scaler.scale(loss).backward()
        scaler.unscale_(o)
        hand.saw_norm(torch.nn.utils.clip_grad_norm_(m.parameters(), 0.3))
        hand.saw_scale(scaler.get_scale())  # the scale this step's backward used
        hand.before_step()
        scaler.step(o)
        hand.after_step()
        scaler.update()
    hand, log, report = run_both(build, loop)
    assert log.loss_scale.tolist() == hand.scales and min(hand.scales) > 1
    for snap in log:
        # Tolerance: the formula is computed here in float32 from the recorded logits; 1e-7 is float32
        # rounding on numbers of size 0.1, and a scaled gradient would be 65536x off.
        assert torch.allclose(snap.act_grads["2"], logits_grad(snap.activations["2"], y), atol=1e-7)
    # Tolerance: the recorder sums per-parameter norms computed as backward finished (then divides by the
    # scale, a power of two, exactly); clip_grad_norm_ computed the same norms in another order.
    assert torch.isnan(log.grad_norm[0]) and torch.allclose(log.grad_norm[1:], torch.stack(hand.norm[1:]), rtol=1e-6)
    assert any("before clipping at step 0" in what for what in report.not_seen)


def poisoned(s):
    """Iteration 2's input is NaN: its gradients are inf/NaN."""
    return s == 2


@pytest.mark.parametrize("set_to_none", [True, False])
def test_grad_scaler_skipped_step_is_no_row_and_is_counted(set_to_none):
    x, y = data()

    def build():
        model = SCALED_MODEL()
        return model, torch.optim.SGD(model.parameters(), lr=0.5), {"scaler": torch.amp.GradScaler("cpu")}

    def loop(m, o, e, hand, s):
        scaler = e["scaler"]
        o.zero_grad(set_to_none=set_to_none)
        xb = x * float("nan") if poisoned(s) else x
        loss = F.cross_entropy(m(xb), y)
        scaler.scale(loss).backward()
        if not poisoned(s):  # GradScaler will skip optimizer.step() on iteration 2
            hand.saw_loss(loss)
            hand.saw_inputs(xb)
            hand.before_step(1 / scaler.get_scale())  # scaler.step unscales first (a power of two: exact)
        scaler.step(o)
        if not poisoned(s):
            hand.after_step()
        scaler.update()
    hand, log, report = run_both(build, loop, rows=STEPS - 1)
    assert report.skipped == {SKIPPED: 1} and report.steps == STEPS - 1
    assert bool(torch.isfinite(log.loss).all())
    assert log.loss_scale.tolist() == [65536.0, 65536.0, 32768.0, 32768.0, 32768.0]  # halved by the skip


def test_a_loops_own_finite_check_skips_the_step_without_a_row():
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        xb = x * float("nan") if poisoned(s) else x
        loss = F.cross_entropy(m(xb), y)
        loss.backward()
        if torch.isfinite(loss):
            hand.saw_loss(loss)
            hand.saw_inputs(xb)
            hand.before_step()
            o.step()
            hand.after_step()
    _, log, report = run_both(sgd_build(), loop, rows=STEPS - 1)
    assert report.skipped == {SKIPPED: 1}
    assert "another forward" not in str(report)


def test_a_skipped_last_iteration_is_counted():
    x, y = data()
    model = SCALED_MODEL()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt) as rec:
        F.cross_entropy(model(x), y).backward()  # and no step
    assert len(rec.log) == 0 and rec.report().skipped == {SKIPPED: 1}


def test_a_fused_optimizer_under_grad_scaler_is_refused_before_its_first_step():
    x, y = data()
    model = SCALED_MODEL()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, fused=True)
    scaler = torch.amp.GradScaler("cpu")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="fused=False") as err:
        with Recorder(model, opt):
            scaler.scale(F.cross_entropy(model(x), y)).backward()
            scaler.step(opt)
    assert "\n" not in str(err.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert no_hooks_left(model, opt)


# ---- 6. the optimizer's parameters change ----
def test_add_param_group_mid_training_is_recorded_from_the_step_it_joins():
    x, y = data()

    def build():
        model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        return model, torch.optim.SGD(model[2].parameters(), lr=0.1), {}

    def loop(m, o, e, hand, s):
        if s == 3:
            o.add_param_group({"params": list(m[0].parameters()), "lr": 0.05})
        plain_step(m, o, x, y, hand)
    hand, log, report = run_both(build, loop)
    assert log.param_names == ["2.weight", "2.bias", "0.weight", "0.bias"]
    assert torch.isnan(log.param("0.weight", "grad")[:3]).all() and not torch.isnan(log.param("0.weight", "grad")[3:]).any()
    assert log.group_lr[:3, 1].isnan().all() and log.group_lr[3:, 1].tolist() == [0.05] * 3
    assert not report.not_seen


def test_unfreezing_mid_training_and_a_parameter_outside_the_model():
    x, y = data()
    def build():
        model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        model[0].weight.requires_grad_(False)
        temperature = nn.Parameter(torch.tensor(1.5))
        return model, torch.optim.SGD([*model.parameters(), temperature], lr=0.1), {"temperature": temperature}

    def loop(m, o, e, hand, s):
        if s == 2:
            m[0].weight.requires_grad_(True)
        hand.named = [(n, p) for n, p in m.named_parameters()] + [("param_groups.0.4", e["temperature"])]
        plain_step(m, o, x, y, hand, lambda out, y: F.cross_entropy(out / e["temperature"], y))
    _, log, report = run_both(build, loop)
    assert log.param_names == ["0.bias", "2.weight", "2.bias", "param_groups.0.4", "0.weight"]
    assert not report.not_seen


def test_a_frozen_parameter_given_a_gradient_by_hand_is_stepped_and_recorded():
    x, y = data()

    def model_fn():
        model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        model[0].weight.requires_grad_(False)
        return model

    def loop(m, o, e, hand, s):
        o.zero_grad()
        loss = F.cross_entropy(m(x), y)
        hand.saw_loss(loss)
        loss.backward()
        if s >= 2:
            m[0].weight.grad = torch.full_like(m[0].weight, 0.01)  # the optimizer steps any tensor with a .grad
        hand.named = list(m.named_parameters())
        hand.before_step()
        o.step()
        hand.after_step()

    def build():
        model = model_fn()
        return model, torch.optim.SGD(model.parameters(), lr=0.1), {}
    _, log, report = run_both(build, loop)
    assert log.param_names[-1] == "0.weight" and torch.isnan(log.param("0.weight", "grad")[:2]).all()
    assert not report.not_seen


@pytest.mark.parametrize("edit", ["renorm", "clamp_", "to_double"])
def test_weights_changed_between_steps_are_read_at_the_step(edit):
    """p.data replaced (renorm), changed in place through .data (no version bump), or the model .double()'d."""
    x, y = data()

    def loop(m, o, e, hand, s):
        xb = x
        if s >= 3 and edit == "to_double":
            m.double()
            xb = x.double()
        plain_step(m, o, xb, y, hand)
        with torch.no_grad():
            w = m[0].weight
            if edit == "renorm":
                w.data = torch.renorm(w.data, 2, 0, 0.5)
            elif edit == "clamp_":
                w.data.clamp_(-0.2, 0.2)
    _, log, _ = run_both(sgd_build(), loop)
    if edit == "to_double":
        # The columns widened to float64 when the model did: the float32 rows are held exactly.
        assert log.values("param_after").dtype == torch.float64 and log.inputs.dtype == torch.float64


def test_a_parameter_changing_shape_is_refused_in_one_line():
    x, y = data()
    model = mlp(nn.Linear(5, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="changed shape") as err:
        with Recorder(model, opt) as rec:
            for s in range(2):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                if s == 1:
                    model[0].bias.data = torch.zeros(4)
                    model[0].bias.grad = torch.zeros(4)
                opt.step()
    assert "\n" not in str(err.value) and len(rec.log) == 1 and no_hooks_left(model, opt)


# ---- 7. every layout ----
class TimeFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.head = nn.LSTM(4, 5), nn.Linear(5, 3)  # (time, batch, feature): batch_first=False

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[-1])


def test_time_first_lstm_batch_and_whole_sequences_of_different_lengths(tmp_path):
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(t, 3, 4, generator=g) for t in (7, 5, 7, 9, 2, 7)]
    y = torch.tensor([0, 2, 1])

    def loop(m, o, e, hand, s):
        plain_step(m, o, xs[s], y, hand)
    _, log, report = run_both(sgd_build(TimeFirst), loop)
    assert log.batch_size.tolist() == [3] * STEPS
    for snap, x in zip(log, xs):
        assert snap.activations["lstm:0"].shape == (len(x), 3, 5) and snap.activations["lstm:1:0"].shape == (1, 3, 5)
        assert torch.equal(snap.activations["lstm:1:0"][0], snap.activations["lstm:0"][-1])
        assert snap.act_grads["lstm:0"].shape == (len(x), 3, 5)
        assert snap.outputs.shape == (3, 3)
    assert not report.not_seen
    loaded = SnapshotLog.load(log.save(tmp_path / "lstm.npz"))  # each row's own shape survives the file
    for a, b in zip(log, loaded):
        assert all(torch.equal(a.activations[k], b.activations[k]) for k in a.activations)
        assert torch.equal(a.inputs, b.inputs)


def test_packed_sequences_record_the_batch_of_sequences():
    from torch.nn.utils.rnn import pack_padded_sequence

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(4, 5, batch_first=True), nn.Linear(5, 3)

        def forward(self, packed):
            _, (h, _) = self.lstm(packed)
            return self.head(h[-1])
    g = torch.Generator().manual_seed(3)
    padded, lengths, y = torch.randn(4, 6, 4, generator=g), torch.tensor([6, 4, 3, 1]), torch.tensor([0, 1, 2, 1])

    def loop(m, o, e, hand, s):
        packed = pack_padded_sequence(padded, lengths, batch_first=True)
        o.zero_grad()
        hand.saw_inputs(packed.data)
        loss = F.cross_entropy(m(packed), y)
        hand.saw_loss(loss)
        loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(Packed), loop)
    assert log.batch_size.tolist() == [4] * STEPS
    assert log[0].activations["lstm:0"].shape == (14, 5)  # the packed output's data: 6+4+3+1 time steps
    assert not report.not_seen


def test_a_layer_returning_a_tuple_records_each_tensor():
    class Gated(nn.Module):  # a leaf with its own parameter, returning (value, gate)
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(5, 8) / 3)

        def forward(self, x):
            h = x @ self.weight
            return h[:, :4], torch.sigmoid(h[:, 4:])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.gated, self.head = Gated(), nn.Linear(4, 3)

        def forward(self, x):
            value, gate = self.gated(x)
            return self.head(value * gate)
    x, y = data()
    _, log, report = run_both(sgd_build(Net), lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    snap = log[0]
    assert snap.activations["gated:0"].shape == (8, 4) and snap.activations["gated:1"].shape == (8, 4)
    # Tolerance: recomputed here from the recorded weight (a matmul may round differently); float32 rounding.
    assert torch.allclose(snap.activations["gated:1"], torch.sigmoid(x @ snap.before["gated.weight"])[:, 4:], atol=1e-6)
    assert set(snap.act_grads) == {"gated:0", "gated:1", "head"} and not report.not_seen


def test_sparse_embedding_gradients_are_recorded_densified():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 3)

        def forward(self, ids):
            return self.head(self.emb(ids).mean(1))
    ids, y = torch.tensor([[1, 2, 3], [3, 4, 4], [9, 0, 1]]), torch.tensor([0, 1, 2])
    _, log, report = run_both(sgd_build(Bag), lambda m, o, e, h, s: plain_step(m, o, ids, y, h))
    assert log[0].grads["emb.weight"].layout == torch.strided and (log[0].grads["emb.weight"][5:9] == 0).all()
    assert not report.not_seen


@pytest.mark.parametrize("kind", ["weight_norm", "parametrize"])
def test_parametrized_layers_are_recorded_as_the_layer_the_user_sees(kind):
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import weight_norm

    class Halved(nn.Module):
        def forward(self, w):
            return w / 2

    def model_fn():
        first = nn.Linear(5, 6)
        if kind == "weight_norm":
            first = weight_norm(first)
        else:
            parametrize.register_parametrization(first, "weight", Halved())
        return mlp(first, nn.Tanh(), nn.Linear(6, 3))
    x, y = data()
    _, log, report = run_both(sgd_build(model_fn), lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert log.layers == ["0", "1", "2"]
    snap = log[0]
    weight = (torch._weight_norm(snap.before["0.parametrizations.weight.original1"],
                                 snap.before["0.parametrizations.weight.original0"]) if kind == "weight_norm"
              else snap.before["0.parametrizations.weight.original"] / 2)
    # Tolerance: the layer's output recomputed here from the recorded weights; float32 rounding.
    assert torch.allclose(snap.activations["0"], x @ weight.T + snap.before["0.bias"], atol=1e-6)
    assert not report.not_seen


# ---- 8. wrapping leaves the user's module as it was ----
def test_the_users_hooks_and_own_forward_survive_and_fire_in_order():
    order = []

    def model_fn():
        model = mlp(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
        model[0].register_forward_pre_hook(lambda m, a: order.append("pre"))
        model[0].register_forward_hook(lambda m, a, o: order.append("post"))
        plain = model[2].forward
        model[2].forward = lambda h: order.append("own forward") or plain(h)  # an instance forward of the user's
        return model
    x, y = data()
    seen = []

    def loop(m, o, e, hand, s):
        plain_step(m, o, x, y, hand)
        seen.append(list(order))
        order.clear()
    torch.manual_seed(0)
    model, opt, _ = sgd_build(model_fn)()
    own = model[2].__dict__["forward"]
    with Recorder(model, opt) as rec:
        for s in range(2):
            loop(model, opt, {}, Nobody(), s)
    assert seen == [["pre", "post", "own forward"]] * 2 and len(rec.log) == 2
    assert model[2].__dict__["forward"] is own and "forward" not in model[0].__dict__
    assert len(model[0]._forward_hooks) == 1 and len(model[0]._forward_pre_hooks) == 1


def test_a_forward_that_raises_leaves_no_wrapper():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, x):
            raise ValueError("bad input")
    model = Fails()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError):
        with Recorder(model, opt):
            model(torch.randn(2, 5))
    assert no_hooks_left(model, opt)


def test_model_forward_called_directly_is_recorded():
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        loss = F.cross_entropy(m.forward(x), y)
        hand.saw_loss(loss)
        loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert set(log[0].activations) == {"0", "1", "2"} and not report.not_seen


# ---- round 3: never a row of garbage, never the user's program changed, never a training run ended ----
def test_a_second_step_after_one_backward_is_a_row_of_absent_cells_not_leftover_memory(tmp_path):
    """optimizer.step() twice after one backward: the second step used the same gradients and saw no forward;
    its row holds the gradients and weights it used, and its inputs and loss read as absent (NaN in columns)."""
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        for _ in range(2):
            hand.before_step()
            o.step()
            hand.after_step()
    hand, log, report = run_both(sgd_build(), loop, steps=STEPS // 2, rows=STEPS)
    for log_ in (log, SnapshotLog.load(log.save(tmp_path / "twice.npz"))):
        assert torch.isnan(log_.loss[1::2]).all() and torch.isfinite(log_.loss[0::2]).all()
        assert torch.isnan(log_.inputs[1::2]).all()
        assert log_.batch_size[1::2].tolist() == [0] * (STEPS // 2)
        for i in range(1, STEPS, 2):
            assert log_[i].loss is None and log_[i].inputs is None and log_[i].activations == {}, i
            assert same(log_[i].grads["0.weight"], hand.grads[i]["0.weight"])
        for i in range(0, STEPS, 2):
            assert same(log_[i].inputs, x) and log_[i].loss is not None
    assert any("no forward of the model in the step" in what for what in report.not_seen)


def test_clipping_only_above_a_bound_leaves_no_garbage_in_the_norm():
    """Clip only when the norm exceeds the bound, as clip_grad_norm_ did before PyTorch 1.9: rows where
    nothing was clipped hold the recorded gradient's own norm, never uninitialised memory."""
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        loss = F.cross_entropy(m(x) * (20 if s % 2 == 0 else 1), y)
        loss.backward()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in m.parameters()]))
        hand.saw_norm(norm)
        if norm > 1.0:
            for p in m.parameters():
                p.grad.mul_(1.0 / float(norm))
        hand.before_step()
        o.step()
        hand.after_step()
    hand, log, _ = run_both(sgd_build(), loop, steps=8)
    norms, recorded = log.grad_norm, torch.linalg.vector_norm(log.values("param_grad"), dim=1)
    for i in range(1, 8):
        expected = hand.norm[i] if float(hand.norm[i]) > 1.0 else recorded[i]
        assert torch.allclose(norms[i], expected, rtol=1e-5), (i, norms[i], expected)


def test_an_optimizer_subclass_calling_super_step_is_one_row_per_step():
    class Noisy(torch.optim.SGD):
        def step(self, closure=None):
            return super().step(closure)
    torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1).step()   # SGD.step itself is now hooked as well
    x, y = data()
    hand, log, report = run_both(sgd_build(opt_fn=lambda ps: Noisy(ps, lr=0.1)),
                                 lambda m, o, e, h, s: plain_step(m, o, x, y, h))
    assert log.lr.tolist() == [0.1] * STEPS and report.steps == STEPS


def test_an_optimizer_step_that_raised_is_no_row_and_recording_goes_on():
    x, y = data()

    class Flaky(torch.optim.SGD):
        calls = 0

        def step(self, closure=None):
            Flaky.calls += 1
            if Flaky.calls == 3:
                raise FloatingPointError("the user's own check")
            return super().step(closure)

    def loop(m, o, e, hand, s):
        try:
            plain_step(m, o, x, y, hand)
        except FloatingPointError:   # the bare run forgets what it collected for the step that never ran
            if isinstance(hand, Hand):
                hand.before.pop(), hand.grads.pop(), hand.lr.pop(), hand.loss.pop(), hand.inputs.pop()

    def build():
        Flaky.calls = 0
        return sgd_build(opt_fn=lambda ps: Flaky(ps, lr=0.1))()
    hand, log, _ = run_both(build, loop, rows=STEPS - 1)
    assert len(log) == STEPS - 1


class InPlaceAfterLayer(nn.Module):
    """Edits a layer's output after the layer: `h = self.fc1(x); h.mul_(2)`, and a residual `out += identity`
    on the last layer's output, as a ResNet block adds its shortcut in place."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3)

    def forward(self, x):
        h = self.fc1(x)
        h.mul_(2)
        out = self.fc2(self.act(h))
        out += x[:, :3]
        return out


def test_a_layer_output_edited_in_place_later_never_ends_the_run():
    x, y = data()
    steps = 40   # past the first flush (32 steps), where the old Recorder raised inside optimizer.step()
    hand, log, report = run_both(sgd_build(InPlaceAfterLayer), lambda m, o, e, h, s: plain_step(m, o, x, y, h),
                                 steps=steps)
    assert log[0].activations.get("fc1") is None and log[0].activations.get("fc2") is None   # left absent...
    assert any("changed in place" in what and "act:fc1 at 1 step" in what for what in report.not_seen)
    torch.manual_seed(0)
    model, *_ = sgd_build(InPlaceAfterLayer)()
    for i in (1, steps - 1):      # ...and from the next step on, each is what the layer produced
        model.load_state_dict({k: v for k, v in zip(model.state_dict(), log[i].before.values())})
        with torch.no_grad():
            assert torch.equal(log[i].activations["fc1"], model.fc1(x))
            assert torch.equal(log[i].activations["fc2"], model.fc2(model.act(model.fc1(x) * 2)))


def forward_of(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("when", ["inside", "after"])
def test_a_copy_of_a_recorded_model_is_a_copy_of_the_bare_model(when):
    """copy.deepcopy, copy.copy, torch.save/load and AveragedModel of a recorded model behave exactly as the
    same copies of the bare model: their own weights, no wrapper, no Recorder reachable, recordable again."""
    import copy
    import io
    import pickle
    x, y = data()
    copies = {}

    def take(model):
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        copies.update(deep=copy.deepcopy(model), shallow=copy.copy(model), saved=torch.load(buffer, weights_only=False),
                      averaged=torch.optim.swa_utils.AveragedModel(model))

    def loop(m, o, e, hand, s):
        plain_step(m, o, x, y, hand)
        if s == 2 and when == "inside":
            take(m)
    torch.manual_seed(0)
    bare, bare_opt, _ = sgd_build()()
    for s in range(STEPS):
        plain_step(bare, bare_opt, x, y, Nobody())
        if s == 2:
            bare_copies = {"deep": copy.deepcopy(bare)}
            expected = forward_of(bare, x)
    torch.manual_seed(0)
    model, opt, _ = sgd_build()()
    with Recorder(model, opt) as rec:
        for s in range(STEPS):
            loop(model, opt, {}, Nobody(), s)
        if when == "after":
            pass
    if when == "after":
        expected = forward_of(model, x)
        take(model)
    for name, c in copies.items():
        net = c.module if name == "averaged" else c
        if name != "shallow":   # a shallow copy shares the live parameters, for the bare model too
            assert torch.equal(forward_of(net, x), expected), name
        for m in net.modules():
            assert not {"forward", "__reduce_ex__", "_nn_lesson_recorder"} & set(m.__dict__), (name, m)
        assert b"Recorder" not in pickle.dumps(net)
    if when == "inside":
        assert torch.equal(forward_of(copies["deep"], x), forward_of(bare_copies["deep"], x))
    with Recorder(copies["deep"], torch.optim.SGD(copies["deep"].parameters(), lr=0.1)) as again:
        F.cross_entropy(copies["deep"](x), y).backward()
        again.optimizer.step()
    assert len(again.log) == 1 and len(rec.log) == STEPS


@pytest.mark.parametrize("order", [("labels", "input_ids", "attention_mask"), ("attention_mask", "labels", "input_ids")])
def test_a_keyword_batch_in_any_order_records_the_models_first_parameter_as_inputs(order):
    """default_data_collator puts `labels` first: the inputs are still input_ids, the forward's first parameter."""
    x, y = data()
    mask = torch.ones_like(x)

    def loop(model, opt, extras, hand, step):
        parts = {"input_ids": x[step % 4 * 2:][:2], "attention_mask": mask[:2], "labels": y[step % 4 * 2:][:2]}
        batch = {k: parts[k] for k in order}
        opt.zero_grad()
        hand.saw_inputs(batch["input_ids"])
        out = model(**batch)
        hand.saw_loss(out["loss"])
        out["loss"].backward()
        hand.before_step()
        opt.step()
        hand.after_step()
    run_both(sgd_build(KeywordModel), loop)


def test_two_forwards_reached_by_one_backward_keep_the_first():
    """A discriminator on real, then on fake data, one loss over both: the row keeps the first forward (the
    README's rule), the second is counted as an extra forward of the step, and neither is 'never reached'."""
    from nn_lesson.hooks.recorder import EXTRA, UNTRAINED
    real, y = data()
    fake = torch.randn(8, 5, generator=torch.Generator().manual_seed(9))

    def loop(m, o, e, hand, s):
        o.zero_grad()
        hand.saw_inputs(real)
        loss = F.cross_entropy(m(real), y) + F.cross_entropy(m(fake), (y + 1) % 3)
        hand.saw_loss(loss)
        loss.backward()
        hand.before_step()
        o.step()
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert report.skipped == {EXTRA: STEPS} and UNTRAINED not in report.skipped
    torch.manual_seed(0)
    model, *_ = sgd_build()()
    for snap in log:
        model.load_state_dict(dict(zip(model.state_dict(), snap.before.values())))
        with torch.no_grad():
            assert torch.equal(snap.outputs, model(real))


def test_a_backward_before_a_step_given_a_closure_that_does_nothing_keeps_its_forward():
    """Lightning's manual optimization: manual_backward(loss), then opt.step() passes a closure that does
    nothing. The row holds the forward and loss that ran before the step."""
    x, y = data()

    def loop(m, o, e, hand, s):
        o.zero_grad()
        hand.saw_inputs(x)
        loss = F.cross_entropy(m(x), y)
        hand.saw_loss(loss)
        loss.backward()
        hand.before_step()
        o.step(closure=lambda: None)
        hand.after_step()
    _, log, report = run_both(sgd_build(), loop)
    assert not report.skipped and not report.not_seen, report


def test_an_evaluation_with_grad_enabled_after_the_last_step_is_counted():
    from nn_lesson.hooks.recorder import UNTRAINED
    x, y = data()

    def loop(m, o, e, hand, s):
        plain_step(m, o, x, y, hand)
        if s == STEPS - 1:
            m(x)   # an accuracy check without no_grad, after the last step
    _, _, report = run_both(sgd_build(), loop)
    assert report.skipped == {UNTRAINED: 1}


@pytest.mark.parametrize("container", [nn.ModuleDict, nn.ModuleList])
def test_a_container_without_a_forward_is_refused_in_one_line_instead_of_a_report_that_misleads(container):
    layers = [nn.Linear(5, 6), nn.Linear(6, 3)]
    model = container({"a": layers[0], "b": layers[1]}) if container is nn.ModuleDict else container(layers)
    with pytest.raises(RuntimeError, match=f"Recorder: a {container.__name__} has no forward of its own") as err:
        Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert "\n" not in str(err.value) and no_hooks_left(model)
