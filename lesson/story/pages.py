"""The lesson's 11 steps as markdown, generated from a SnapshotLog: every number is read from a tensor.

Steps: 1 the challenge, 2 the training data, 3 the starting weights, 4/6/8 the network meets the first
three students, 5/7/9 it learns from each, 10 the final test on held-out students, 11 what it learned.
The chain rule by hand for step 0 comes as a twelfth page.
"""

from __future__ import annotations

import torch

from nn_lesson.lesson.story.chain_rule import compare, hand_gradients
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.names import INPUT_LABELS, all_weight_names, weight_name
from nn_lesson.lesson.story.numbers import num, pct, signed
from nn_lesson.lesson.run.record import RunRecord

FEATURE_TITLES = ("hours studied", "hours slept", "previous score %")


def who(names: list[str]) -> str:
    """'Sarah', 'Sarah and Mike', or 'Sarah, Mike and 6 more' for a big batch."""
    names = [md(n) for n in names]
    if len(names) <= 2:
        return " and ".join(names)
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def lesson_steps(record: RunRecord) -> list[tuple[str, str]]:
    """[(title, markdown)] for the 11 steps, then the chain rule page."""
    steps = [challenge(record), training_data(record), starting_weights(record)]
    for k in range(3):
        if k < len(record.log):
            steps += [meets(record, k), learns(record, k)]
        else:
            steps += [(f"{4 + 2 * k:02d} (no step {k})", "Training stopped before this step."),
                      (f"{5 + 2 * k:02d} (no step {k})", "Training stopped before this step.")]
    steps += [final_test(record), what_it_learned(record)]
    if len(record.log):
        steps.append(chain_rule_page(record, 0))
    return steps


def challenge(record: RunRecord) -> tuple[str, str]:
    c, log = record.config, record.log
    n_weights = sum(p.numel for p in log.params if p.name.endswith("weight"))
    n_biases = sum(p.numel for p in log.params if p.name.endswith("bias"))
    loss = ("cross-entropy on two scores (softmax gives the confidences)" if c.loss == "ce"
            else "mean squared error on two sigmoid outputs (the seed lesson's setup)")
    epochs = int(log.epoch[-1]) + 1 if len(log) else 0
    text = (
        "**Can a network learn who passes?** From three numbers per student (hours studied, hours slept, "
        "previous score) a network of 3 inputs → 4 hidden units → 2 outputs says how confident it is in "
        "**PASS** and in **FAIL**.\n\n"
        f"It has **{n_weights} weights and {n_biases} biases**. It learns from **{len(record.names)} students** "
        f"and is tested on **{len(record.heldout_names)} it never sees** while learning.\n\n"
        f"Settings of this run: learning rate **{c.lr:g}**, loss: {loss}, hidden activation: {c.activation}, "
        f"{c.batch_size} student(s) per step, starting weights: {c.init}.\n\n"
        f"A **step** is one weight update; an **epoch** is one pass over all {len(record.names)} training "
        f"students. This run took **{len(log)} steps** in **{epochs} epochs**."
    )
    if record.stopped:
        text += f"\n\n**Training stopped early:** {record.stopped}."
    return "01 the challenge", text


def training_data(record: RunRecord) -> tuple[str, str]:
    raw, labels, scaler = record.training.features, record.training.labels, record.scaler
    scaled = scaler(raw)
    rows = [[md(name), *[f"{float(v):g}" for v in raw[i]], record.label(labels[i]), *[signed(v) for v in scaled[i]]]
            for i, name in enumerate(record.names)]
    header = ["student", *FEATURE_TITLES, "result", *[f"{t} (network sees)" for t in INPUT_LABELS]]
    stats = table(["", *FEATURE_TITLES], [["mean", *[num(v, 2) for v in scaler.mean]],
                                          ["spread (std)", *[num(v, 2) for v in scaler.std]]])
    return "02 the training data", (
        "The students the network learns from. A score of 85 next to 8 hours would drown the hours, so each "
        "column is **standardised**: minus the column's mean, divided by its spread, with mean and spread "
        "taken from these training students only (held-out students are scaled with the same numbers).\n\n"
        + table(header, rows) + "\n\n" + stats)


def starting_weights(record: RunRecord) -> tuple[str, str]:
    initial = record.initial
    rows = []
    for name in ("hidden.weight", "output.weight"):
        for idx, label in all_weight_names(name, tuple(initial[name].shape)):
            rows.append([label, signed(initial[name][idx])])
    biases = ", ".join(f"{weight_name(n, (i,))} {signed(v)}" for n in ("hidden.bias", "output.bias")
                       for i, v in enumerate(initial[n]))
    origin = ("the seed lesson's picture: fixed values, the same every run" if record.config.init == "lesson" else
              f"PyTorch's default initialisation: uniform between ±1/√(inputs of the layer), drawn with seed "
              f"{record.config.seed}")
    return "03 the starting weights", (
        f"Before learning, the weights are just starting points ({origin}). The network knows nothing yet: "
        "a weight says how strongly one unit pushes the next, and its sign says which way.\n\n"
        + table(["weight (from→to)", "value"], rows) + f"\n\nBiases: {biases}.")


def meets(record: RunRecord, k: int) -> tuple[str, str]:
    snap = record.log[k]
    conf = record.confidences(snap.outputs)
    labels = record.training.labels
    rows, right = [], 0
    for b, name in enumerate(record.students_of(k)):
        truth = labels[int(snap.samples[b])]
        guess = int(conf[b].argmax())
        right += guess == int(truth)
        rows.append([md(name), pct(conf[b, 0]), pct(conf[b, 1]), record.label(guess), record.label(truth),
                     "right" if guess == int(truth) else "wrong"])
    whom = who(record.students_of(k))
    hidden = ", ".join(f"h{j + 1} {num(v)}" for j, v in enumerate(snap.activations["hidden_act"][0]))
    return f"{4 + 2 * k:02d} the network meets {whom}", (
        f"Step {k}: the network sees {whom} (first student's standardised inputs "
        + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_LABELS, snap.inputs[0])) + f"). "
        f"The hidden units light up: {hidden}.\n\n"
        + table(["student", "PASS confidence", "FAIL confidence", "guess", "truth", ""], rows)
        + f"\n\nIt got **{right} of {len(rows)}** right, with a loss of **{num(snap.loss)}**.")


def learns(record: RunRecord, k: int) -> tuple[str, str]:
    snap, lr = record.log[k], record.log[k].lr
    whom = who(record.students_of(k))
    err = snap.act_grads["output"]                     # dL/d(output score): the error signal per output
    h = snap.activations["hidden_act"]
    grad = snap.grads["output.weight"]
    o, j = divmod(int(grad.abs().argmax()), grad.shape[1])
    name = weight_name("output.weight", (o, j))
    before, after = snap.before["output.weight"][o, j], snap.after["output.weight"][o, j]
    products = " + ".join(f"{signed(err[b, o])} × {num(h[b, j])}" for b in range(err.shape[0]))
    top = []
    for n, u in sorted(snap.update.items(), key=lambda item: -float(item[1].abs().max())):
        flat = int(u.abs().argmax())
        idx = divmod(flat, u.shape[1]) if u.dim() == 2 else (flat,)
        top.append([n, weight_name(n, idx), signed(snap.before[n][idx]), signed(u[idx]), signed(snap.after[n][idx])])
    loss_all = record.train.loss_by_step
    error_rows = [[f"{who_b}", signed(err[b, 0]), signed(err[b, 1])] for b, who_b in enumerate(map(md, record.students_of(k)))]
    return f"{5 + 2 * k:02d} the network learns from {whom}", (
        f"**How wrong?** The loss was {num(snap.loss)}. Its gradient with respect to each output score is the "
        f"error signal that `loss.backward()` sends back:\n\n"
        + table(["student", "error at PASS", "error at FAIL"], error_rows) + "\n\n"
        f"**Which weights to blame?** A weight's gradient is the error at the unit it feeds times the "
        f"activation coming into it. For **{name}**: gradient = {products} = **{signed(grad[o, j])}**.\n\n"
        f"**Adjust:** `weight_new = weight_old − lr × gradient` = {signed(before)} − {lr:g} × {signed(grad[o, j])} "
        f"= **{signed(after)}**.\n\n"
        f"The weights that moved most in each layer:\n\n"
        + table(["parameter", "weight", "before", "update", "after"], top) + "\n\n"
        f"Loss on all {len(record.names)} training students: **{num(loss_all[k])}** before this step, "
        f"**{num(loss_all[k + 1])}** after it.")


def final_test(record: RunRecord) -> tuple[str, str]:
    if record.heldout is None:
        return "10 the final test", ("This data has no held-out students, so there is no final test: add rows "
                                     "with `split` set to `heldout` to keep some students out of training.")
    conf, labels, raw = record.heldout.confidence_final, record.held_out.labels, record.held_out.features
    rows, right = [], 0
    for i, name in enumerate(record.heldout_names):
        guess = int(conf[i].argmax())
        right += guess == int(labels[i])
        rows.append([md(name), *[f"{float(v):g}" for v in raw[i]], pct(conf[i, 0]), pct(conf[i, 1]),
                     record.label(guess), record.label(labels[i]), "right" if guess == int(labels[i]) else "wrong"])
    epochs = record.epochs
    n = len(epochs.epoch)
    shown = sorted({int(i) for i in torch.linspace(0, n - 1, min(n, 10)).round()}) if n else []
    history = [[str(int(epochs.epoch[i]) + 1), num(epochs.train_loss[i]), num(epochs.heldout_loss[i]),
                pct(epochs.train_accuracy[i]), pct(epochs.heldout_accuracy[i])] for i in shown]
    return "10 the final test", (
        f"The trained network meets {len(rows)} students it never learned from. It got **{right} of {len(rows)}** "
        "right.\n\n" + table(["student", *FEATURE_TITLES, "PASS confidence", "FAIL confidence", "guess", "truth", ""],
                             rows)
        + "\n\nLoss history (after each shown epoch):\n\n"
        + table(["epoch", "loss, training students", "loss, held-out", "accuracy, training", "accuracy, held-out"],
                history))


def what_it_learned(record: RunRecord) -> tuple[str, str]:
    final = record.final()
    raw = record.training.features
    base = record.predict(final, record.scaler(raw))[:, 0]
    changes = ((1.0, "one more hour of study", "more study"), (1.0, "one more hour of sleep", "more sleep"),
               (10.0, "10 more points of previous score", "a higher previous score"))
    rows, surprises = [], []
    for f, (delta, title, short) in enumerate(changes):
        moved = raw.clone()
        moved[:, f] += delta
        change = record.predict(final, record.scaler(moved))[:, 0] - base
        rows.append([title, signed(change.mean()), signed(change.min()), signed(change.max())])
        if float(change.mean()) <= 0:
            surprises.append(f"{short} did **not** raise the PASS confidence on average ({signed(change.mean())})")
    pass_w = final["output.weight"][0]
    strongest = int(pass_w.abs().argmax())
    pattern = ("The hoped-for pattern appeared: more study, more sleep and a higher previous score each raise "
               "the PASS confidence." if not surprises else
               "The hoped-for pattern did not fully appear: " + "; ".join(surprises) +
               ". With six students the network only learns what separates them, not how the world works.")
    return "11 what the network learned", (
        "Each training student is changed in one input while the others stay put, and the trained network "
        "is asked again. The change in its PASS confidence:\n\n"
        + table(["change", "mean change in PASS confidence", "smallest", "largest"], rows)
        + f"\n\n{pattern}\n\nThe hidden unit with the strongest say in PASS is **h{strongest + 1}** "
        f"(weight {signed(pass_w[strongest])}); the weights into it from the inputs are "
        + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_LABELS, final["hidden.weight"][strongest])) + ".")


def chain_rule_page(record: RunRecord, k: int) -> tuple[str, str]:
    snap = record.log[k]
    hand = hand_gradients(snap, record.config.activation, record.config.loss)
    rows = [[name, "yes" if exact else "no", "yes" if approx else "no", f"{diff:.2e}"]
            for name, exact, approx, diff in compare(snap, record.config.activation, record.config.loss)]
    g = hand["hidden.weight"][0, 0]
    products = " + ".join(f"{signed(snap.act_grads['hidden'][b, 0])} × {signed(snap.inputs[b, 0])}"
                          for b in range(snap.inputs.shape[0]))
    return f"12 the chain rule by hand, step {k}", (
        f"`loss.backward()` is the chain rule. Here it is by hand for step {k}, in plain arithmetic from the "
        "recorded inputs and weights, beside what autograd recorded. Output layer: error × incoming "
        "activation. Hidden layer: the error sent back through each output weight, times the activation's "
        f"slope, times the input. For studied→h1: {products} = {signed(g)} by hand; autograd says "
        f"{signed(snap.grads['hidden.weight'][0, 0])}."
        "\n\n" + table(["tensor", "exact", "approximate", "largest difference"], rows))
