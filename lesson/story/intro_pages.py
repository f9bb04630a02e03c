"""Pages 01-03: the challenge, the training data, the starting weights."""

from __future__ import annotations

import torch

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.claims import LN2, run_claims, stated, worse_than_guessing
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.markdown import table
from nn_lesson.lesson.story.names import HIDDEN_LABELS, INPUT_LABELS, OUTPUT_LABELS, all_weight_names, weight_name
from nn_lesson.lesson.story.numbers import num, pct, signed
from nn_lesson.lesson.story.page import Page

FEATURE_TITLES = ("hours studied", "hours slept", "previous score %")


def challenge(record: RunRecord) -> Page:
    c, log = record.config, record.log
    n_weights = sum(p.numel for p in log.params if p.name.endswith("weight"))
    n_biases = sum(p.numel for p in log.params if p.name.endswith("bias"))
    epochs = int(log.epoch[-1]) + 1 if len(log) else 0
    n = len(record.names)
    story = (
        "**Can a network learn who passes?** From hours studied, hours slept and previous score, a small network "
        "gives its **confidence** in **PASS** and in **FAIL** (percentages; the larger is its answer). It learns "
        f"from **{n} students**, then meets **{len(record.heldout_names)} new ones**.\n\n"
        "Its **loss** measures how wrong it is (0: sure of every right answer). Each **step** nudges its "
        f"{n_weights} **weights** and {n_biases} biases, the numbers it computes with, to lower the loss; the **learning rate**, here **{c.lr:g}**, sets the "
        f"nudge's size. An **epoch** is one pass over all {n} students: **{len(log)} steps**, **{epochs} epochs**."
    )
    if record.stopped and not record.stopped.startswith("diverged"):
        story += f"\n\n**Training stopped early:** {md(record.stopped)}."
    claims = run_claims(record)
    if stated(claims):
        story += "\n\n**What happened:**\n\n" + stated(claims, plain=True)
    loss = ("cross-entropy on two scores; softmax turns the scores into confidences that add up to 100%"
            if c.loss == "ce" else "mean squared error on two separate sigmoid outputs, the original lesson's setup")
    deep = (f"The network is 3 inputs → 4 hidden units → 2 outputs: **{n_weights} weights and {n_biases} biases**.\n\n"
            f"Settings of this run: learning rate **{c.lr:g}**, loss: {loss}, hidden activation: {c.activation}, "
            f"{c.batch_size} student(s) per step, starting weights: {c.init}"
            + (f" (seed {c.seed})" if c.init != "lesson" else "") + ".")
    if stated(claims):
        deep += ("\n\n**What happened, with its evidence** (each sentence is chosen by a check on the run's "
                 "numbers, `lesson/story/claims.py`):\n\n" + stated(claims))
    return Page("01 the challenge", story, deep)


def training_data(record: RunRecord) -> Page:
    raw, labels, scaler = record.training.features, record.training.labels, record.scaler
    scaled = scaler(raw)
    rows = [[md(name), *[f"{float(v):g}" for v in raw[i]], record.label(labels[i])]
            for i, name in enumerate(record.names)]
    story = (f"The **{len(rows)} students** the network learns from, and the result it must learn to predict:\n\n"
             + table(["student", *FEATURE_TITLES, "result"], rows) + "\n\n"
             "Hours and a score out of 100 sit on different scales, so the network sees each column "
             "**standardised**: shifted and stretched so that its average is 0 and a typical distance from the "
             "average is 1. Then no column drowns the others.")
    seen = [[md(name), *[signed(v) for v in scaled[i]]] for i, name in enumerate(record.names)]
    stats = table(["", *FEATURE_TITLES], [["mean", *[num(v, 2) for v in scaler.mean]],
                                          ["spread (std)", *[num(v, 2) for v in scaler.std]]])
    deep = ("Standardising: minus the column's mean, divided by its spread (standard deviation), with mean and "
            "spread taken from these training students only; the held-out students are scaled with the same "
            "numbers, so the test sees nothing of them in advance.\n\n" + stats + "\n\nWhat the network sees:\n\n"
            + table(["student", *[f"{t} (standardised)" for t in INPUT_LABELS]], seen))
    return Page("02 the training data", story, deep)


def starting_weights(record: RunRecord) -> Page:
    initial = record.initial
    origin = ("the lesson's own fixed values, the same every run" if record.config.init == "lesson" else
              f"random numbers, drawn with seed {record.config.seed}")
    hidden = [[f"into {HIDDEN_LABELS[u]}", *[signed(initial["hidden.weight"][u, i]) for i in range(3)]]
              for u in range(initial["hidden.weight"].shape[0])]
    output = [[f"into {OUTPUT_LABELS[o]}", *[signed(initial["output.weight"][o, u]) for u in range(len(HIDDEN_LABELS))]]
              for o in range(initial["output.weight"].shape[0])]
    conf = record.train.confidence_start
    story = ("A **weight** says how strongly one number pushes the next; its sign says which way. The inputs feed "
             "4 **hidden units** (in-between sums), and those feed PASS and FAIL. Before learning, the weights are "
             f"starting points: {origin}.\n\n"
             + table(["", *[f"from {t}" for t in INPUT_LABELS]], hidden) + "\n\n"
             + table(["", *[f"from {h}" for h in HIDDEN_LABELS]], output) + "\n\n"
             f"So before any step it already has opinions: it gives the training students between "
             f"**{pct(conf[:, 0].min())}** and **{pct(conf[:, 0].max())}** PASS.")
    rows = [[label, signed(initial[name][idx])] for name in ("hidden.weight", "output.weight")
            for idx, label in all_weight_names(name, tuple(initial[name].shape))]
    biases = ", ".join(f"{weight_name(n, (i,))} {signed(v)}" for n in ("hidden.bias", "output.bias")
                       for i, v in enumerate(initial[n]))
    how = ("fixed values read off the original lesson's network picture" if record.config.init == "lesson" else
           f"PyTorch's default initialisation: uniform between ±1/√(inputs of the layer), drawn with seed "
           f"{record.config.seed}")
    start = worse_than_guessing(record)
    deep = (f"The starting weights are {how}. Every weight and bias:\n\n" + table(["weight (from→to)", "value"], rows)
            + f"\n\nBiases (added to a unit's sum): {biases}.\n\n"
            + (start.sentence if start.holds else
               f"At the start its loss on all training students is **{num(record.train.loss_by_step[0])}**"
               + (f", better than the {num(LN2)} (ln 2) of a coin flip." if record.config.loss == "ce" else "."))
            + "\n\n" + why_cross_entropy(record))
    return Page("03 the starting weights", story, deep)


def why_cross_entropy(record: RunRecord) -> str:
    """CE's error against the original sigmoid + MSE, for the student the starting network is most wrong about."""
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
            f"the error confidence − truth = **{signed(ce_error[i, out])}** at {label}; the original lesson's two "
            f"sigmoids with mean squared error would send back only **{signed(mse_error[i, out])}** from the same "
            f"scores, because the sigmoid's slope o(1 − o) = {num(o[i, out] * (1 - o[i, out]))} shrinks the error "
            "exactly when the network is confidently wrong. "
            + ("This run uses cross-entropy." if record.config.loss == "ce" else
               "This run uses the original MSE (`--loss mse`), so it learns from the smaller signal."))


def outputs_before_squash(record: RunRecord, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The two output scores before any output sigmoid (logits), under `params`."""
    with torch.no_grad():
        h = record.model.hidden_act(x @ params["hidden.weight"].T + params["hidden.bias"])
        return h @ params["output.weight"].T + params["output.bias"]
