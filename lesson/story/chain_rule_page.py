"""The chain rule whole for one weight of one step, a centred finite-difference check, and every parameter's
gradient by hand beside autograd's: the depth of the page where the network first learns (05)."""

from __future__ import annotations

import torch
from torch.func import functional_call

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import build_loss
from nn_lesson.lesson.story.chain_rule import activation_derivative, compare, hand_gradients
from nn_lesson.lesson.story.markdown import table
from nn_lesson.lesson.story.names import all_weight_names
from nn_lesson.lesson.story.numbers import num, signed

FD_EPS = 1e-6
PARAMS = ("hidden.weight", "hidden.bias", "output.weight", "output.bias")


def chain_rule_depth(record: RunRecord, k: int) -> str:
    snap = record.log[k]
    activation, loss = record.config.activation, record.config.loss
    hand = hand_gradients(snap, activation, loss)
    fd = finite_difference(record, snap)
    g = float(hand["hidden.weight"][0, 0])
    rel = abs(fd - g) / max(abs(fd), abs(g), 1e-300)
    verdict = ("agree as closely as a centred difference can show (CS231n: below 1e-7 is the hoped-for "
               "reading; the difference itself is only good to about 1e-9 here): the hand chain rule is right"
               if rel < 1e-7 else
               "agree well (CS231n: below 1e-4 is fine for smooth functions)" if rel < 1e-4 else
               "disagree: something in the chain is wrong")
    entries = []
    for name in PARAMS:
        for idx, label in all_weight_names(name, tuple(snap.grads[name].shape)):
            mine, theirs = float(hand[name][idx]), float(snap.grads[name][idx])
            entries.append([label, f"{mine:+.8e}", f"{theirs:+.8e}", f"{abs(mine - theirs):.1e}"])
    tensors = [[name, "yes" if exact else "no", "yes" if approx else "no", f"{diff:.2e}"]
               for name, exact, approx, diff in compare(snap, activation, loss) if name not in PARAMS]
    return (
        f"**The chain rule by hand, step {k}.** `loss.backward()` is the chain rule. Here it is whole for one "
        "weight, **studied→h1**, from the recorded inputs and weights (first student of the step):\n\n"
        + one_weight_chain(snap, activation, loss) + "\n\n"
        f"Summed over the step's students: **{g:+.10f}** by hand; autograd recorded "
        f"**{float(snap.grads['hidden.weight'][0, 0]):+.10f}**.\n\n"
        f"**Check without calculus:** nudge the weight by ±ε = {FD_EPS:g} and watch the loss, in float64: "
        f"(L(w + ε) − L(w − ε)) / 2ε = {fd:+.12f}, against {g:+.12f} by hand. Relative error "
        f"|a − b| / max(|a|, |b|) = {rel:.1e}: they {verdict}.\n\n"
        "**Every parameter's gradient, by hand and by autograd.** The hand sums run in float64 (about 16 "
        "significant digits), autograd in float32 (about 7), so the two agree to float32's precision but rarely "
        "to the last bit:\n\n"
        + table(["gradient of the loss with respect to", "by hand (float64)", "autograd (float32)", "difference"],
                entries) + "\n\n"
        "And the layers' outputs (`output` and `hidden` before their activation, `*_act` after it); 'approximate' "
        "means within a relative 1e-4 and an absolute 1e-6:\n\n"
        + table(["gradient of the loss with respect to", "exact", "approximate", "largest difference"], tensors))


def one_weight_chain(snap, activation: str, loss: str) -> str:
    """Every factor of d loss / d (studied→h1) for the step's first student, in float64."""
    w = {n: t.double() for n, t in snap.before.items()}
    x = snap.inputs[:1].double()
    z1 = x @ w["hidden.weight"].T + w["hidden.bias"]
    h = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation](z1)
    batch = snap.inputs.shape[0]
    hand = hand_gradients(snap, activation, loss)
    e = hand["output"][0]  # the error at each output score, batch division included
    slope = activation_derivative(activation, z1, h)[0, 0]
    dh1 = e[0] * w["output.weight"][0, 0] + e[1] * w["output.weight"][1, 0]
    slope_rule = {"sigmoid": "h1 × (1 − h1)", "tanh": "1 − h1²", "relu": "1 if z1 > 0 else 0"}[activation]
    error_rule = ("confidence − truth" + (f", divided by the batch of {batch}" if batch > 1 else "")
                  if loss == "ce" else "(output − target) × output × (1 − output)"
                  + (f", divided by the batch of {batch}" if batch > 1 else ""))
    return "\n".join([
        f"1. Error at each output score ({error_rule}): PASS {signed(e[0])}, FAIL {signed(e[1])}.",
        f"2. Back through the weights h1→PASS {signed(w['output.weight'][0, 0])} and h1→FAIL "
        f"{signed(w['output.weight'][1, 0])}: dL/dh1 = ({signed(e[0])}) × ({signed(w['output.weight'][0, 0])}) + "
        f"({signed(e[1])}) × ({signed(w['output.weight'][1, 0])}) = {signed(dh1)}.",
        f"3. Through h1's {activation} (h1 = {num(h[0, 0])}, slope {slope_rule} = {num(slope)}): "
        f"dL/dz1 = {signed(dh1)} × {num(slope)} = {signed(dh1 * slope)}.",
        f"4. Times the input that the weight multiplies (studied, standardised, {signed(x[0, 0])}): "
        f"dL/dw = {signed(dh1 * slope)} × {signed(x[0, 0])} = **{signed(dh1 * slope * x[0, 0])}**.",
    ])


def finite_difference(record: RunRecord, snap) -> float:
    """Centred difference of the step's loss in studied→h1, everything in float64."""
    params = {n: t.double().clone() for n, t in snap.before.items()}
    loss_fn = build_loss(record.config)
    x = snap.inputs.double()
    targets = snap.targets if record.config.loss == "ce" else snap.targets.double()

    def loss_at(delta: float) -> float:
        p = dict(params)
        p["hidden.weight"] = params["hidden.weight"].clone()
        p["hidden.weight"][0, 0] += delta
        with torch.no_grad():
            return float(loss_fn(functional_call(record.model, p, (x,)), targets))
    return (loss_at(FD_EPS) - loss_at(-FD_EPS)) / (2 * FD_EPS)
