"""Pages 04-09: the network meets the students of a step (its guess, the loss), then learns from them (the
gradient, the update, and what the step did to every training student)."""

from __future__ import annotations

import torch

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import build_loss
from nn_lesson.lesson.story.claims import correct, overshot_step, straight_line_fails
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.markdown import table, who
from nn_lesson.lesson.story.names import INPUT_LABELS, weight_name
from nn_lesson.lesson.story.numbers import amount, num, pct, signed, signed_amount
from nn_lesson.lesson.story.page import Page
from nn_lesson.lesson.story.per_student import StepEffect, step_effect
from nn_lesson.lesson.story.worked import worked_weight

RAW_WORDS = ("{} h studied", "{} h slept", "previous score {}")


def meets(record: RunRecord, k: int) -> Page:
    snap = record.log[k]
    conf = record.confidences(snap.outputs)
    truths = record.training.labels[snap.samples]
    right = correct(conf, truths)
    rows, losses = [], []
    for b, name in enumerate(record.students_of(k)):
        guess = record.label(int(conf[b].argmax())) if bool(torch.isfinite(conf[b]).all()) else "none (not a number)"
        rows.append([md(name), pct(conf[b, 0]), pct(conf[b, 1]), guess, record.label(truths[b]),
                     "right" if bool(right[b]) else "wrong"])
        losses.append(loss_in_words(record, md(name), conf[b], int(truths[b]), snap.outputs[b]))
    students = record.students_of(k)
    whom = who(students)
    raw = record.training.features[int(snap.samples[0])]
    seen = (f"{md(students[0])}: " + ", ".join(w.format(f"{float(v):g}") for v, w in zip(raw, RAW_WORDS))
            if len(students) == 1 else f"{len(students)} students at once")
    mean = ""
    if len(rows) > 1:
        each = [float(v) for v in step_losses(record, snap)]
        mean = (f" The loss of a step with several students is the **mean** of theirs: "
                f"({' + '.join(amount(v) for v in each)}) / {len(each)} = {amount(sum(each) / len(each))}.")
    story = (f"Step {k}: the network sees {seen}.\n\n"
             + table(["student", "PASS confidence", "FAIL confidence", "guess", "truth", "right?"], rows)
             + f"\n\nIt got **{int(right.sum())} of {len(rows)}** right.\n\n**How wrong, as one number: the loss.** "
             + " ".join(losses) + mean + f" Loss of this step's students: **{amount(snap.loss)}**.")
    hidden = ", ".join(f"h{j + 1} {num(v)}" for j, v in enumerate(snap.activations["hidden_act"][0]))
    whose = f"{md(students[0])}'s" if len(students) == 1 else f"the first student's, {md(students[0])}'s,"
    deep = (f"What the network really sees: {whose} standardised inputs "
            + ", ".join(f"{t} {signed(v)}" for t, v in zip(INPUT_LABELS, snap.inputs[0]))
            + f". The hidden units light up: {hidden}.")
    if record.config.loss == "ce":
        deep += (" The two output scores go through softmax (e to each score, divided by their sum), so the "
                 "confidences add up to 100%; the loss is cross-entropy, −ln(confidence in the truth).")
    else:
        deep += (" The original lesson's two outputs are separate sigmoids, so the PASS and FAIL confidences need "
                 f"not add up to 100% (here {pct(conf[0, 0])} + {pct(conf[0, 1])} = {pct(conf[0].sum())}); the loss "
                 "is their mean squared error.")
    return Page(f"{4 + 2 * k:02d} the network meets {whom}", story, deep)


def loss_in_words(record: RunRecord, name: str, conf: torch.Tensor, truth: int,
                  outputs: torch.Tensor | None = None) -> str:
    """The loss defined with this student's own numbers. Under cross-entropy −ln(confidence) is worked out from
    the output scores (log-softmax, in float64), as the loss itself is: so the two agree, and a confidence too
    close to 0 to print (or to hold in a float) is written in scientific notation, or said to round to 0."""
    if record.config.loss == "ce":
        if outputs is not None:
            minus_ln = -torch.log_softmax(outputs.double(), -1)[truth]
        else:
            minus_ln = -torch.log(conf[truth].double())
        c = torch.exp(-minus_ln)
        head = f"For {name} it is −ln(confidence in the truth, {record.label(truth)}) = "
        tail = ": 0 at 100% sure of the truth, growing fast below."
        if not bool(torch.isfinite(minus_ln)):
            return head + f"−ln({amount(conf[truth])}) = not a number{tail}"
        if float(c) == 0:   # e^−L below the smallest float: the confidence itself cannot be written down
            return (head + f"{amount(minus_ln)}: its confidence, e to the power −{amount(minus_ln)}, is so close to "
                    f"0 that a computer rounds it to 0{tail}")
        return head + f"−ln({amount(c)}) = {amount(minus_ln)}{tail}"
    target = torch.nn.functional.one_hot(torch.tensor(truth), 2).to(conf.dtype)
    return (f"For {name} it is the mean of the squared misses, (({num(conf[0])} − {num(target[0], 0)})² + "
            f"({num(conf[1])} − {num(target[1], 0)})²) / 2 = {num(((conf - target) ** 2).mean())}.")


def step_losses(record: RunRecord, snap) -> torch.Tensor:
    """Each of the step's students' own loss, from the recorded outputs and targets."""
    loss_fn = build_loss(record.config)
    return torch.stack([loss_fn(snap.outputs[b:b + 1], snap.targets[b:b + 1]) for b in range(len(snap.outputs))])


def learns(record: RunRecord, k: int, chain_rule: str = "") -> Page:
    """`chain_rule`: the whole chain rule for this step, appended to the depth (page 05 carries it)."""
    snap, lr = record.log[k], record.log[k].lr
    whom = who(record.students_of(k))
    err = snap.act_grads["output"]                     # dL/d(output score): the error signal per output
    h = snap.activations["hidden_act"]
    grad = snap.grads["output.weight"]
    _, o, j = worked_weight(snap)                      # the weight the Lesson tab marks on this page
    name = weight_name("output.weight", (o, j))
    before, after = snap.before["output.weight"][o, j], snap.after["output.weight"][o, j]
    products = " + ".join(f"({signed(err[b, o])}) × {num(h[b, j])}" for b in range(err.shape[0]))
    effect = step_effect(record, k)
    loss_all = record.train.loss_by_step
    story = (
        f"**Which way to nudge?** A weight's **gradient** says how fast the loss grows as that weight grows. "
        f"For **{name}**: gradient = {products} = **{signed(grad[o, j])}**: the **error** at {('PASS', 'FAIL')[o]} "
        f"(how far its output is from the truth) times what h{j + 1} passed on.\n\n"
        f"**Adjust:** weight_new = weight_old − lr × gradient = {signed(before)} − {lr:g} × {signed(grad[o, j])} "
        f"= **{signed(after)}**. Every weight moves at once.\n\n" + everyone_story(record, k, effect)
        + f"\n\nLoss on all {len(record.names)} training students: **{amount(loss_all[k])}** before this step, "
          f"**{amount(loss_all[k + 1])}** after it.")
    top = []
    for n, u in sorted(snap.update.items(), key=lambda item: -float(item[1].abs().max())):
        flat = int(u.abs().argmax())
        idx = divmod(flat, u.shape[1]) if u.dim() == 2 else (flat,)
        top.append([n, weight_name(n, idx), signed(snap.before[n][idx]), signed(u[idx]), signed(snap.after[n][idx])])
    error_rows = [[md(n), signed(err[b, 0]), signed(err[b, 1])] for b, n in enumerate(record.students_of(k))]
    deep = (f"**The error signal.** The gradient of the loss ({amount(snap.loss)}) with respect to each output score "
            "is what `loss.backward()` sends back first (the story's **error**); `loss.backward()` is the call that "
            "works out every gradient. " + error_in_words(record, snap) + "\n\n"
            + table(["student", "error at PASS", "error at FAIL"], error_rows) + "\n\n"
            f"A weight's gradient is the error at the unit it feeds times the activation coming into it, summed over "
            f"the step's students; that is how {name} got {signed(grad[o, j])}.\n\n"
            "The weights that moved most in each layer:\n\n"
            + table(["parameter", "weight", "before", "update", "after"], top) + "\n\n" + everyone_deep(record, k, effect))
    if chain_rule:
        deep += "\n\n" + chain_rule
    return Page(f"{5 + 2 * k:02d} the network learns from {whom}", story, deep)


def error_in_words(record: RunRecord, snap) -> str:
    """For cross-entropy the error is confidence − truth (divided by the batch size), with this step's numbers."""
    if record.config.loss != "ce":
        return ("With the original MSE it is (output − target) × the sigmoid's slope output × (1 − output), "
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


NO_CHANGE = "no change"


def change_word(change: float | torch.Tensor) -> str:
    """What a step did to one student, read from the real change of their loss: helped (it fell), hurt (it
    rose), no change (exactly 0), not a number. The change is printed with enough digits to show which
    (signed_amount), so a word never stands beside a change that prints as zero."""
    c = float(change)
    if c != c or c in (float("inf"), float("-inf")):
        return "not a number"
    return "helped" if c < 0 else "hurt" if c > 0 else NO_CHANGE


def everyone_story(record: RunRecord, k: int, effect: StepEffect) -> str:
    """Every training student's loss before and after the step, helped or hurt by what really happened, with
    the straight-line guess beside it; where the two are far apart, that the loss is curved over a step this
    big; and, only where the step's own students' loss went up, that the step overshot."""
    change = effect.loss_after - effect.loss_before
    in_step = set(int(i) for i in record.log[k].samples)
    label = [change_word(c) for c in change]
    rows = [[md(n) + (" (this step)" if i in in_step else ""), amount(effect.loss_before[i]),
             amount(effect.loss_after[i]), signed_amount(change[i]), signed_amount(effect.predicted_change[i]),
             label[i]] for i, n in enumerate(record.names)]
    groups = {w: [md(n) for i, n in enumerate(record.names) if label[i] == w]
              for w in ("helped", "hurt", NO_CHANGE, "not a number")}
    text = ("**What the step did to every student** (helped: their loss fell; the straight-line guess: the change "
            "the gradients predict as if the loss were a straight slope):\n\n"
            + table(["student", "loss before", "loss after this step", "change", "straight-line guess", "helped?"], rows))
    if groups["helped"] and len(groups["helped"]) == len(record.names):
        text += "\n\nThis step helped every training student."
    else:
        said = [f"helped {', '.join(groups['helped']) or 'nobody'}"]
        if groups["hurt"]:
            said.append(f"hurt {', '.join(groups['hurt'])}")
        if groups[NO_CHANGE]:
            said.append(f"left {', '.join(groups[NO_CHANGE])} exactly where they were")
        if groups["not a number"]:
            said.append(f"left {', '.join(groups['not a number'])} with a loss that is not a number")
        text += "\n\nThis step " + (" and ".join(said) if len(said) < 3 else "; ".join(said[:-1]) + "; and " + said[-1])
        text += ": the weights are shared." if groups["hurt"] else "."
    # the straight line against what happened, where something finite happened (a loss that is not a number is
    # said above, and is no curve)
    seen = [i for i in range(len(record.names)) if bool(torch.isfinite(change[i]))]
    off = straight_line_fails(record, [record.names[i] for i in seen], change[seen], effect.predicted_change[seen])
    if off.holds:
        text += " " + off.plain
    over = overshot_step(record, k, effect.loss_before, effect.loss_after)
    if over.holds:
        text += "\n\n" + over.plain
    return text


def everyone_deep(record: RunRecord, k: int, effect: StepEffect) -> str:
    """Each student's own gradient against the step's: the first-order picture behind the straight-line guess."""
    change = effect.loss_after - effect.loss_before
    rows = [[md(n), signed_amount(change[i]), signed_amount(effect.predicted_change[i]),
             signed_amount(effect.agreement[i])] for i, n in enumerate(record.names)]
    text = ("**Each student's own gradient.** The step moves every weight by −lr × g, g being this step's gradient. "
            "Each student has a gradient of their own, gᵢ (per-student gradients, `torch.func.vmap(grad(...))`); to "
            "first order the step changes student i's loss by −lr × (gᵢ · g): a positive dot product means the "
            "student's own gradient points the same way as the step. Whether they were helped is read from the real "
            "change, not from this prediction.\n\n"
            + table(["student", "real change", "first order −lr·gᵢ·g", "gᵢ · g"], rows))
    off = straight_line_fails(record, list(record.names), change, effect.predicted_change)
    text += "\n\n" + (off.sentence if off.holds else
                      "The first-order prediction is within 2× of the real change for every student: a step this "
                      "size still sees the loss as nearly straight.")
    in_step = record.log[k].samples.long()
    if len(in_step) > 1:
        gap = max(float((effect.grads[n][in_step].mean(0) - record.log[k].grads[n]).abs().max()) for n in effect.grads)
        text += (f"\n\nWith {len(in_step)} students in the step, its gradient is the **mean** of their own "
                 f"gradients (largest difference between the two: {gap:.1e}).")
    return text
