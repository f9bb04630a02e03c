"""Captured numbers against independent computations: a hand-written chain rule and centred finite
differences, both in float64, and a re-run forward pass."""

import pytest
import torch
from torch import nn

from nn_lesson.hooks import Recorder
from nn_lesson.lesson.run.settings import LessonConfig
from nn_lesson.models import StudentNet

LR = 0.5


def hand_chain_rule(params, x, y, loss: str):
    """dL/dparam for hidden(3->4) -> sigmoid -> output(4->2) [-> sigmoid], plain tensor ops, no autograd."""
    w1, b1, w2, b2 = params["hidden.weight"], params["hidden.bias"], params["output.weight"], params["output.bias"]
    batch = x.shape[0]
    z1 = x @ w1.T + b1
    h = 1 / (1 + torch.exp(-z1))
    z2 = h @ w2.T + b2
    if loss == "ce":
        p = torch.exp(z2 - z2.max(1, keepdim=True).values)
        p = p / p.sum(1, keepdim=True)
        dz2 = (p - nn.functional.one_hot(y, 2).double()) / batch          # d mean(-log p_y) / d z2
    else:
        o = 1 / (1 + torch.exp(-z2))
        dz2 = 2 * (o - y) / y.numel() * o * (1 - o)                        # d mean((o-t)^2) / d z2
    dh = dz2 @ w2
    dz1 = dh * h * (1 - h)
    return {"hidden.weight": dz1.T @ x, "hidden.bias": dz1.sum(0), "output.weight": dz2.T @ h,
            "output.bias": dz2.sum(0)}


def loss_at(params, x, y, loss: str) -> torch.Tensor:
    net = StudentNet("sigmoid", sigmoid_outputs=loss == "mse").double()
    out = torch.func.functional_call(net, params, (x,))
    return nn.functional.cross_entropy(out, y) if loss == "ce" else nn.functional.mse_loss(out, y)


def finite_differences(params, x, y, loss: str, eps: float = 1e-6):
    grads = {}
    for name, value in params.items():
        g = torch.zeros_like(value)
        for idx in range(value.numel()):
            plus = {k: v.clone() for k, v in params.items()}
            minus = {k: v.clone() for k, v in params.items()}
            plus[name].view(-1)[idx] += eps
            minus[name].view(-1)[idx] -= eps
            g.view(-1)[idx] = (loss_at(plus, x, y, loss) - loss_at(minus, x, y, loss)) / (2 * eps)
        grads[name] = g
    return grads


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp_min(1e-7)).max())


def record_float64(loss: str, batch_size: int, steps: int):
    torch.manual_seed(0)
    model = StudentNet.from_lesson(sigmoid_outputs=loss == "mse").double()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss() if loss == "ce" else nn.MSELoss()
    x = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    y = labels if loss == "ce" else nn.functional.one_hot(labels, 2).double()
    with Recorder(model, opt, loss_fn) as rec:
        for step in range(steps):
            idx = torch.arange(step * batch_size, step * batch_size + batch_size) % 6
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return rec.log, model


@pytest.mark.parametrize("loss, batch_size", [("ce", 1), ("ce", 3), ("mse", 1), ("mse", 2)])
def test_captured_gradients_equal_chain_rule_and_finite_differences(loss, batch_size):
    log, _ = record_float64(loss, batch_size, steps=5)
    assert len(log) == 5
    for snap in log:
        x, y = snap.inputs, snap.targets
        hand = hand_chain_rule(snap.before, x, y, loss)
        numeric = finite_differences(snap.before, x, y, loss)
        for name, captured in snap.grads.items():
            assert captured.dtype == torch.float64
            assert relative_error(captured, hand[name]) < 1e-10, (snap.step, name)
            assert relative_error(captured, numeric[name]) < 1e-6, (snap.step, name)
        assert snap.loss == pytest.approx(float(loss_at(snap.before, x, y, loss)), rel=1e-12)


def test_captured_activations_equal_a_rerun_forward():
    log, _ = record_float64("ce", 2, steps=4)
    for snap in log:
        net = StudentNet().double()
        net.load_state_dict(snap.before)
        z1 = net.hidden(snap.inputs)
        assert torch.equal(snap.activations["hidden"], z1)
        assert torch.equal(snap.activations["hidden_act"], torch.sigmoid(z1))
        assert torch.equal(snap.activations["output"], net(snap.inputs))
        assert torch.equal(snap.outputs, net(snap.inputs))


def test_activation_gradients_follow_the_chain_rule():
    log, _ = record_float64("ce", 3, steps=3)
    for snap in log:
        p = snap.outputs.softmax(1)
        dz2 = (p - nn.functional.one_hot(snap.targets, 2).double()) / 3
        assert torch.allclose(snap.act_grads["output"], dz2, rtol=1e-12, atol=1e-15)
        dh = dz2 @ snap.before["output.weight"]
        assert torch.allclose(snap.act_grads["hidden_act"], dh, rtol=1e-12, atol=1e-15)
        h = snap.activations["hidden_act"]
        assert torch.allclose(snap.act_grads["hidden"], dh * h * (1 - h), rtol=1e-10, atol=1e-15)


def test_sgd_update_is_after_minus_before_is_minus_lr_times_grad():
    log, model = record_float64("ce", 1, steps=6)
    for snap in log:
        for name in snap.grads:
            assert torch.equal(snap.update[name], snap.after[name] - snap.before[name])
            assert torch.allclose(snap.update[name], -LR * snap.grads[name], rtol=0, atol=1e-15)
    for i in range(1, len(log)):  # nothing else touches the weights between steps
        assert all(torch.equal(log[i].before[n], log[i - 1].after[n]) for n in log.param_names)
    assert all(torch.equal(log[-1].after[n], p) for n, p in model.named_parameters())


def test_lesson_run_gradients_match_the_chain_rule_in_float32(lesson_run):
    """The CLI's own float32 run: its captured gradients against the float64 hand computation."""
    for i in (0, 1, 2, 100, 359):
        snap = lesson_run.log[i]
        params = {k: v.double() for k, v in snap.before.items()}
        hand = hand_chain_rule(params, snap.inputs.double(), snap.targets, LessonConfig().loss)
        for name, captured in snap.grads.items():
            assert torch.allclose(captured.double(), hand[name], rtol=1e-4, atol=1e-6), (i, name)
