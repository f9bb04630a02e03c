"""The lesson's 11 steps as markdown, generated from a SnapshotLog: every number is read from a tensor.

Steps: 1 the challenge, 2 the training data, 3 the starting weights, 4/6/8 the network meets the first
three students, 5/7/9 it learns from each, 10 the final test on held-out students, 11 what it learned.
The chain rule by hand for step 0 comes as a twelfth page.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from nn_lesson.lesson.run.settings import build_loss
from nn_lesson.lesson.story.chain_rule import activation_derivative, compare, hand_gradients
from nn_lesson.lesson.story.baseline import logistic_baseline
from nn_lesson.lesson.story.claims import LN2, correct, log_odds, run_claims, stated, worse_than_guessing
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.names import INPUT_LABELS, all_weight_names, weight_name
from nn_lesson.lesson.story.numbers import num, pct, signed
from nn_lesson.lesson.story.per_student import step_effect
from nn_lesson.lesson.run.record import RunRecord

FEATURE_TITLES = ("hours studied", "hours slept", "previous score %")


def who(names: list[str]) -> str:
    """'Sarah', 'Sarah and Mike', 'Sarah, Mike and Emma', or 'Sarah, Mike and 6 more' for a big batch."""
    names = [md(n) for n in names]
    if len(names) <= 3:
        return " and ".join(names) if len(names) <= 2 else f"{names[0]}, {names[1]} and {names[2]}"
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
    if record.stopped and not record.stopped.startswith("diverged"):
        text += f"\n\n**Training stopped early:** {md(record.stopped)}."
    happened = stated(run_claims(record))
    if happened:
        text += "\n\n**What happened in this run** (each sentence is checked against its numbers):\n\n" + happened
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
    conf = record.train.confidence_start
    start = (f"Before any step it already has opinions: it gives the training students between "
             f"{pct(conf[:, 0].min())} and {pct(conf[:, 0].max())} PASS. ")
    start += worse_than_guessing(record).sentence if worse_than_guessing(record).holds else (
        f"Its loss on all training students starts at **{num(record.train.loss_by_step[0])}**"
        + (f", better than the {num(LN2)} (ln 2) of a coin flip." if record.config.loss == "ce" else "."))
    return "03 the starting weights", (
        f"Before learning, the weights are just starting points ({origin}): a weight says how strongly one "
        "unit pushes the next, and its sign says which way. " + start + "\n\n"
        + table(["weight (from→to)", "value"], rows) + f"\n\nBiases: {biases}.\n\n" + why_cross_entropy(record))


def why_cross_entropy(record: RunRecord) -> str:
    """CE's error against the seed's sigmoid + MSE, for the student the starting network is most wrong about."""
    x = record.scaler(record.training.features)
    scores = outputs_before_squash(record, record.initial, x)
    labels = record.training.labels
    onehot = torch.nn.functional.one_hot(labels, 2).to(scores.dtype)
    ce_error = scores.softmax(-1) - onehot
    o = torch.sigmoid(scores)
    mse_error = (o - onehot) * o * (1 - o)   # d/d(score) of the mean squared error of the two sigmoids
    i = int(ce_error.abs().max(-1).values.argmax())
    out = int(ce_error[i].abs().argmax())
    name, label = md(record.names[i]), ("PASS", "FAIL")[out]
    return (f"**Why cross-entropy?** Read through softmax, the starting scores are most wrong about {name}: "
            f"{label} {pct(scores.softmax(-1)[i, out])} where the truth is {pct(onehot[i, out])}. Cross-entropy sends back "
            f"the error confidence − truth = **{signed(ce_error[i, out])}** at {label}; the seed's two sigmoids with "
            f"mean squared error would send back only **{signed(mse_error[i, out])}** from the same scores, because "
            f"the sigmoid's slope o(1 − o) = {num(o[i, out] * (1 - o[i, out]))} shrinks the error exactly when the "
            "network is confidently wrong. "
            + ("This run uses cross-entropy." if record.config.loss == "ce" else
               "This run uses the seed's MSE (`--loss mse`), so it learns from the smaller signal."))


def outputs_before_squash(record: RunRecord, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The two output scores before any output sigmoid (logits), under `params`."""
    with torch.no_grad():
        h = record.model.hidden_act(x @ params["hidden.weight"].T + params["hidden.bias"])
        return h @ params["output.weight"].T + params["output.bias"]


def meets(record: RunRecord, k: int) -> tuple[str, str]:
    snap = record.log[k]
    conf = record.confidences(snap.outputs)
    truths = record.training.labels[snap.samples]
    right = correct(conf, truths)
    rows, losses = [], []
    for b, name in enumerate(record.students_of(k)):
        guess = int(conf[b].argmax())
        rows.append([md(name), pct(conf[b, 0]), pct(conf[b, 1]), record.label(guess) if
                     bool(torch.isfinite(conf[b]).all()) else "none (not a number)", record.label(truths[b]),
                     "right" if bool(right[b]) else "wrong"])
        losses.append(loss_in_words(record, md(name), conf[b], int(truths[b])))
    whom = who(record.students_of(k))
    hidden = ", ".join(f"h{j + 1} {num(v)}" for j, v in enumerate(snap.activations["hidden_act"][0]))
    mean = ""
    if len(rows) > 1:
        each = [float(v) for v in step_losses(record, snap)]
        mean = (f" The loss of a step with several students is the **mean** of theirs: "
                f"({' + '.join(num(v) for v in each)}) / {len(each)} = {num(sum(each) / len(each))}.")
    sums = ""
    if record.config.loss == "mse":
        sums = (" The seed's two outputs are separate sigmoids, so the PASS and FAIL confidences need not add "
                f"up to 100% (here {pct(conf[0, 0])} + {pct(conf[0, 1])} = {pct(conf[0].sum())}).")
    return f"{4 + 2 * k:02d} the network meets {whom}", (
        f"Step {k}: the network sees {whom} (first student's standardised inputs "
        + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_LABELS, snap.inputs[0])) + f"). "
        f"The hidden units light up: {hidden}.\n\n"
        + table(["student", "PASS confidence", "FAIL confidence", "guess", "truth", ""], rows)
        + f"\n\nIt got **{int(right.sum())} of {len(rows)}** right.{sums}\n\n**How wrong, as one number: the loss.** "
        + " ".join(losses) + mean + f" The step's loss: **{num(snap.loss)}**.")


def loss_in_words(record: RunRecord, name: str, conf: torch.Tensor, truth: int) -> str:
    """The loss defined with this student's own numbers."""
    if record.config.loss == "ce":
        c = conf[truth]
        return (f"For {name}, cross-entropy is −ln(confidence in the truth, {record.label(truth)}) = "
                f"−ln({num(c)}) = {num(-torch.log(c.double()))}.")
    target = torch.nn.functional.one_hot(torch.tensor(truth), 2).to(conf.dtype)
    return (f"For {name}, mean squared error is (({num(conf[0])} − {num(target[0], 0)})² + "
            f"({num(conf[1])} − {num(target[1], 0)})²) / 2 = {num(((conf - target) ** 2).mean())}.")


def step_losses(record: RunRecord, snap) -> torch.Tensor:
    """Each of the step's students' own loss, from the recorded outputs and targets."""
    loss_fn = build_loss(record.config)
    return torch.stack([loss_fn(snap.outputs[b:b + 1], snap.targets[b:b + 1]) for b in range(len(snap.outputs))])


def learns(record: RunRecord, k: int) -> tuple[str, str]:
    snap, lr = record.log[k], record.log[k].lr
    whom = who(record.students_of(k))
    err = snap.act_grads["output"]                     # dL/d(output score): the error signal per output
    h = snap.activations["hidden_act"]
    grad = snap.grads["output.weight"]
    o, j = divmod(int(grad.abs().argmax()), grad.shape[1])
    name = weight_name("output.weight", (o, j))
    before, after = snap.before["output.weight"][o, j], snap.after["output.weight"][o, j]
    products = " + ".join(f"({signed(err[b, o])}) × {num(h[b, j])}" for b in range(err.shape[0]))
    top = []
    for n, u in sorted(snap.update.items(), key=lambda item: -float(item[1].abs().max())):
        flat = int(u.abs().argmax())
        idx = divmod(flat, u.shape[1]) if u.dim() == 2 else (flat,)
        top.append([n, weight_name(n, idx), signed(snap.before[n][idx]), signed(u[idx]), signed(snap.after[n][idx])])
    loss_all = record.train.loss_by_step
    error_rows = [[f"{who_b}", signed(err[b, 0]), signed(err[b, 1])] for b, who_b in enumerate(map(md, record.students_of(k)))]
    return f"{5 + 2 * k:02d} the network learns from {whom}", (
        f"**How wrong?** The loss was {num(snap.loss)}. Its gradient with respect to each output score is the "
        f"error signal that `loss.backward()` sends back. " + error_in_words(record, snap) + "\n\n"
        + table(["student", "error at PASS", "error at FAIL"], error_rows) + "\n\n"
        f"**Which weights to blame?** A weight's gradient is the error at the unit it feeds times the "
        f"activation coming into it. For **{name}**: gradient = {products} = **{signed(grad[o, j])}**.\n\n"
        f"**Adjust:** `weight_new = weight_old − lr × gradient` = {signed(before)} − {lr:g} × {signed(grad[o, j])} "
        f"= **{signed(after)}**.\n\n"
        f"The weights that moved most in each layer:\n\n"
        + table(["parameter", "weight", "before", "update", "after"], top) + "\n\n"
        f"Loss on all {len(record.names)} training students: **{num(loss_all[k])}** before this step, "
        f"**{num(loss_all[k + 1])}** after it.\n\n" + everyone_after(record, k))


def error_in_words(record: RunRecord, snap) -> str:
    """For cross-entropy the error is confidence − truth (divided by the batch size), with this step's numbers."""
    if record.config.loss != "ce":
        return ("With the seed's MSE it is (output − target) × the sigmoid's slope output × (1 − output), "
                "divided by the number of students in the step (the 2 from the square cancels the mean over "
                "the two outputs).")
    conf = record.confidences(snap.outputs[:1])[0]
    truth = int(record.training.labels[snap.samples[0]])
    target = 1.0 if truth == 0 else 0.0
    batch = len(snap.outputs)
    divide = f", divided by the {batch} students of the batch" if batch > 1 else ""
    return (f"With cross-entropy it is simply confidence − truth{divide}: for {md(record.students_of(snap.step)[0])} "
            f"at PASS, ({pct(conf[0])} − {pct(target)}){f' / {batch}' if batch > 1 else ''} = "
            f"**{signed((conf[0] - target) / batch)}**.")


def everyone_after(record: RunRecord, k: int) -> str:
    """Every training student before and after the step, and why: each one's own gradient against the step's."""
    effect = step_effect(record, k)
    change = effect.loss_after - effect.loss_before
    in_step = set(int(i) for i in record.log[k].samples)
    rows = []
    for i, name in enumerate(record.names):
        helped = bool(effect.agreement[i] > 0)
        rows.append([md(name) + (" (this step)" if i in in_step else ""), num(effect.loss_before[i]),
                     num(effect.loss_after[i]), signed(change[i]), signed(effect.predicted_change[i]),
                     signed(effect.agreement[i]), "helped" if helped else "hurt"])
    helped_names = [md(n) for i, n in enumerate(record.names) if bool(effect.agreement[i] > 0)]
    hurt_names = [md(n) for i, n in enumerate(record.names) if not bool(effect.agreement[i] > 0)]
    text = ("**What the step did to every student.** The step moves every weight by −lr × g, g being this "
            "step's gradient. Each student has a gradient of their own, gᵢ (per-student gradients, "
            "`torch.func.vmap(grad(...))`); to first order the step changes student i's loss by −lr × (gᵢ · g). "
            "A positive dot product means the student's own gradient points the same way as the step: it helps them.\n\n"
            + table(["student", "loss before", "loss after", "change", "predicted −lr·gᵢ·g", "gᵢ · g", ""], rows))
    if hurt_names:
        text += (f"\n\nThis step helped {', '.join(helped_names) or 'nobody'} and hurt {', '.join(hurt_names)}: the "
                 "weights are shared, so pushing them towards one student's answer (the output biases and the "
                 "weights into PASS and FAIL move for everyone) pulls the others' answers too. Over an epoch the "
                 "pushes from every student add up.")
    else:
        text += "\n\nThis step helped every training student: their gradients all point the same way."
    if len(in_step) > 1:
        idx = record.log[k].samples.long()
        gap = max(float((effect.grads[n][idx].mean(0) - record.log[k].grads[n]).abs().max()) for n in effect.grads)
        text += (f"\n\nWith {len(in_step)} students in the step, its gradient is the **mean** of their own "
                 f"gradients (largest difference between the two: {gap:.1e}).")
    return text


def final_test(record: RunRecord) -> tuple[str, str]:
    if record.heldout is None:
        return "10 the final test", ("This data has no held-out students, so there is no final test: add rows "
                                     "with `split` set to `heldout` to keep some students out of training.")
    conf, labels, raw = record.heldout.confidence_final, record.held_out.labels, record.held_out.features
    ok = correct(conf, labels)
    right = int(ok.sum())
    rows = []
    for i, name in enumerate(record.heldout_names):
        guess = record.label(conf[i].argmax()) if bool(torch.isfinite(conf[i]).all()) else "none (not a number)"
        rows.append([md(name), *[f"{float(v):g}" for v in raw[i]], pct(conf[i, 0]), pct(conf[i, 1]),
                     guess, record.label(labels[i]), "right" if bool(ok[i]) else "wrong"])
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
    """Study, sleep or score? Read from the trained network in log-odds, beside a straight-line baseline."""
    claims = run_claims(record)
    if claims["diverged"].holds:
        return "11 what the network learned", claims["diverged"].sentence + " There is no pattern to read."
    final = record.final()
    raw = record.training.features
    base = log_odds(record, final, raw)
    spread = record.scaler.std
    changes = ((1.0, "one more hour of study", "more study"), (1.0, "one more hour of sleep", "more sleep"),
               (10.0, "10 more points of previous score", "a higher previous score"))
    rows, effects, surprises = [], [], []
    for f, (delta, title, short) in enumerate(changes):
        moved = raw.clone()
        moved[:, f] += delta
        change = log_odds(record, final, moved) - base
        per_spread = change.mean() * spread[f] / delta  # per one spread of the input: comparable across inputs
        effects.append(float(per_spread))
        rows.append([title, signed(change.mean()), signed(change.min()), signed(change.max()), signed(per_spread)])
        if float(change.mean()) <= 0:
            surprises.append(f"{short} did **not** raise the log-odds of PASS on average ({signed(change.mean())})")
    parts = ["Each training student is changed in one input while the others stay put, and the trained network "
             "is asked again. The change in its **log-odds** of PASS, ln(PASS / FAIL confidence) — what decides "
             "the answer, and unlike a confidence it does not flatten out near 0% or 100%:\n\n"
             + table(["change", "mean change in log-odds", "smallest", "largest", "per one spread of the input"], rows)]
    if claims["not_trained"].holds:
        parts.append(claims["not_trained"].sentence + " So it has no answer to the question yet.")
    else:
        parts.append("The hoped-for pattern appeared: more study, more sleep and a higher previous score each raise "
                     "the log-odds of PASS." if not surprises else
                     "The hoped-for pattern did not fully appear: " + "; ".join(surprises) + ".")
        parts.append(answer(effects))
    if claims["saturated"].holds:
        parts.append(claims["saturated"].sentence)
    parts.append(strongest_unit(record, final))
    parts.append(baseline_page_text(record))
    return "11 what the network learned", "\n\n".join(parts)


INPUT_WORDS = ("hours studied", "hours slept", "previous score")
CANNOT_TELL = 1.25  # the strongest input must beat the next by this factor to be named the answer


def answer(effects: list[float]) -> str:
    """Which input matters most, per one spread of each (so hours and points compare); or that the data cannot tell."""
    order = sorted(range(3), key=lambda f: -abs(effects[f]))
    first, second = order[0], order[1]
    ratio = abs(effects[first]) / max(abs(effects[second]), 1e-12)
    if ratio < CANNOT_TELL:
        return (f"**Study, sleep or score?** The data cannot tell {INPUT_WORDS[first]} from {INPUT_WORDS[second]}: "
                f"one spread of each moves the log-odds by {signed(effects[first])} and {signed(effects[second])} "
                f"(less than {CANNOT_TELL}× apart). Six students are few.")
    return (f"**Study, sleep or score?** For this network, **{INPUT_WORDS[first]}**: one spread of it moves the "
            f"log-odds of PASS by {signed(effects[first])}, {ratio:.1f}× as much as {INPUT_WORDS[second]} "
            f"({signed(effects[second])}).")


def strongest_unit(record: RunRecord, final: dict[str, torch.Tensor]) -> str:
    """The hidden unit that decides most: its PASS-minus-FAIL weight times how much it varies across students."""
    w = final["output.weight"]
    decide = w[0] - w[1]
    with torch.no_grad():
        h = record.model.hidden_act(record.scaler(record.training.features) @ final["hidden.weight"].T
                                    + final["hidden.bias"])
    say = decide.abs() * h.std(0, correction=0)
    j = int(say.argmax())
    return (f"The hidden unit with the strongest say is **h{j + 1}**: what decides the answer is its PASS weight "
            f"minus its FAIL weight, ({signed(w[0, j])}) − ({signed(w[1, j])}) = {signed(decide[j])}, and its output "
            f"varies by {num(h[:, j].std(correction=0))} across the students, so it moves the log-odds by about "
            f"{num(say[j])} (the others: " + ", ".join(f"h{i + 1} {num(say[i])}" for i in range(len(say)) if i != j)
            + "). The weights into it: "
            + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_LABELS, final["hidden.weight"][j])) + ".")


def baseline_page_text(record: RunRecord) -> str:
    b = logistic_baseline(record)
    n, held = len(record.training), len(record.held_out)
    net_right = int(correct(record.train.confidence_final, record.training.labels).sum())
    net_held = int(correct(record.heldout.confidence_final, record.held_out.labels).sum()) if record.heldout else None
    line = (f"**Does the hidden layer help?** A straight-line rule (logistic regression on the same standardised "
            f"inputs, no hidden layer) gets {b.train_right} of {n} training students right"
            + (f" and {b.heldout_right} of {held} held-out" if b.heldout_right is not None else "")
            + f"; the network {net_right} of {n}" + (f" and {net_held} of {held}" if net_held is not None else "")
            + ". Its log-odds per one spread: " + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_WORDS, b.weights))
            + ". ")
    same = b.train_right == net_right and (net_held is None or b.heldout_right == net_held)
    line_better = b.train_right >= net_right and (net_held is None or b.heldout_right >= net_held) and not same
    if same:
        return line + "Here the hidden layer adds nothing: one straight boundary separates these students as well."
    if line_better:
        return (line + "Here the straight line does better than this network: the network has not found what a "
                "straight boundary already finds.")
    return line + "The hidden layer adds what one straight boundary cannot separate."


def chain_rule_page(record: RunRecord, k: int) -> tuple[str, str]:
    snap = record.log[k]
    activation, loss = record.config.activation, record.config.loss
    hand = hand_gradients(snap, activation, loss)
    rows = [[name, "yes" if exact else "no", "yes" if approx else "no", f"{diff:.2e}"]
            for name, exact, approx, diff in compare(snap, activation, loss)]
    chain = one_weight_chain(snap, activation, loss)
    fd = finite_difference(record, snap)
    g = float(hand["hidden.weight"][0, 0])
    rel = abs(fd - g) / max(abs(fd), abs(g), 1e-300)
    verdict = ("agree as closely as a centred difference can show (CS231n: below 1e-7 is the hoped-for "
               "reading; the difference itself is only good to about 1e-9 here): the hand chain rule is right"
               if rel < 1e-7 else
               "agree well (CS231n: below 1e-4 is fine for smooth functions)" if rel < 1e-4 else
               "disagree: something in the chain is wrong")
    return f"12 the chain rule by hand, step {k}", (
        f"`loss.backward()` is the chain rule. Here it is whole for one weight, **studied→h1**, at step {k}, "
        "from the recorded inputs and weights (first student of the step):\n\n" + chain + "\n\n"
        f"Summed over the step's students: **{signed(g)}** by hand; autograd recorded "
        f"**{signed(snap.grads['hidden.weight'][0, 0])}**.\n\n"
        f"**Check without calculus:** nudge the weight by ±ε = {FD_EPS:g} and watch the loss, in float64: "
        f"(L(w + ε) − L(w − ε)) / 2ε = {fd:+.10f}, against {g:+.10f} by hand. Relative error "
        f"|a − b| / max(|a|, |b|) = {rel:.1e}: they {verdict}.\n\n"
        "**Why 'exact: no' below.** The hand sums run in float64 (about 16 significant digits), autograd "
        "in float32 (about 7), so the two agree to float32's precision but rarely to the last bit. "
        "'approximate' means within a relative 1e-4 and an absolute 1e-6. The rows are the gradient of the loss "
        "with respect to each tensor: `output` and `hidden` the layers' outputs before their activation "
        "(`*_act` after it), the others the parameters.\n\n"
        + table(["gradient of the loss with respect to", "exact", "approximate", "largest difference"], rows))


FD_EPS = 1e-6


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


# Temporary until the two-layer pages land (issue 19): the story as it is, with no depth yet.
@dataclass(frozen=True)
class Page:
    title: str
    story: str
    deep: str = ""


def lesson_pages(record: RunRecord) -> list[Page]:
    return [Page(title, text) for title, text in lesson_steps(record)]
