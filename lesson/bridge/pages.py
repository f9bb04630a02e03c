"""The bridge lesson's text pages, every number from the run's log."""

from __future__ import annotations

import torch

from nn_lesson.lesson.bridge.train import BridgeRun
from nn_lesson.lesson.story.numbers import num, pct
from nn_lesson.lesson.story.pages import table

LOOP_MAP = [
    ("for xb, yb in loader:", "a batch of students (here: 64 digit images)", "4/6/8 the network meets ..."),
    ("optimizer.zero_grad()", "forget the last step's blame", "(between 5 and 6)"),
    ("out = model(xb)", "the network's guess", "4/6/8 the network meets ..."),
    ("loss = loss_fn(out, yb)", "how wrong", "5/7/9 the error"),
    ("loss.backward()", "which weights to blame (the chain rule)", "5/7/9 the gradient; 05 under the hood: the chain rule"),
    ("optimizer.step()", "adjust: new = old − lr × gradient (plain SGD)", "5/7/9 the worked update"),
    ("model.eval(); accuracy(held-out)", "the final test on unseen examples", "10 the final test"),
]


def loop_page() -> tuple[str, str]:
    return "bridge/01 the training loop, line by line", (
        "The real training loop is the lesson's loop, at scale. Each line and the lesson step it is:\n\n"
        + table(["line of the loop", "what it does", "lesson step"], [[f"`{a}`", b, c] for a, b, c in LOOP_MAP])
        + "\n\nThe Recorder sees all of it without changing it: a thin wrapper around every layer's `forward` "
        "(put back afterwards), `retain_grad` on each layer's output, the optimizer's step pre- and post-hooks. "
        "The loop itself is unchanged.")


def optimizer_page(run: BridgeRun) -> tuple[str, str]:
    """Why Adam's update is not −lr × grad: the ratio update / (−lr × grad) per layer, from the log."""
    log, lr = run.log, run.config.learning_rate
    if not log.has("param_after"):
        return "bridge/02 the update rule", "Statistics-only capture keeps no per-step updates; run with --policy every:K."
    rows = []
    for name in log.param_names:
        update, grad = log.param(name, "update")[-1], log.param(name, "grad")[-1]
        plain = -lr * grad
        mask = plain.abs() > 1e-12
        ratio = (update[mask] / plain[mask]) if mask.any() else torch.zeros(1)
        rows.append([name, num(update.abs().mean(), 6), num(plain.abs().mean(), 6), num(ratio.median(), 3),
                     f"{num(ratio.min(), 3)} … {num(ratio.max(), 3)}"])
    step = int(log.step[-1])
    kind = {"sgd": "plain SGD: every ratio is 1, the update is exactly −lr × gradient",
            "momentum": "SGD with momentum: the update follows a running sum of past gradients, so the ratio "
                        "drifts from 1 and can even be negative when the gradient has just turned",
            "adam": "Adam: each weight's step is its running mean gradient divided by the root of its running "
                    "mean squared gradient, so steps are about lr in size whatever the gradient's size; the "
                    "ratio to −lr × gradient varies wildly from weight to weight"}[run.config.optimizer]
    return "bridge/02 the update rule", (
        f"Recorded step {step}, optimizer **{run.config.optimizer}**, lr {lr:g}. The update is always "
        f"`after − before`; how it relates to the gradient depends on the optimizer: {kind}.\n\n"
        + table(["parameter", "mean size of the update", "mean size of −lr × gradient", "median ratio", "ratio range"], rows))


def accuracy_page(run: BridgeRun) -> tuple[str, str]:
    rows = [[str(e + 1), pct(t), pct(h)] for e, (t, h) in enumerate(zip(run.train_accuracy, run.accuracy))]
    return "bridge/03 accuracy per epoch", (
        f"Held-out accuracy after the last epoch: **{pct(run.accuracy[-1])}** on {len(run.heldout[1])} digits "
        f"never trained on ({run.seconds:.1f} s of training).\n\n"
        + table(["epoch", "training accuracy", "held-out accuracy"], rows))
