"""Claims about a run: each is a predicate over the run's numbers, with the sentence it allows and the numbers
it rests on. A page states a claim only when its predicate holds; tests check the predicates on runs where
they are true and on runs where they are false.

NaN is never a right answer: a student whose confidences are not finite counts as wrong, and a run with
non-finite numbers makes no claim about patterns or importance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.func import functional_call

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.numbers import num, signed

LN2 = math.log(2)
OVERSHOOT_RATIO = 1.5     # the loss on all students growing this much over one epoch is overshooting, not noise
SATURATED_LOGIT = 20.0    # |PASS − FAIL score| beyond this: float32 softmax rounds the confidence to 0 or 1


@dataclass(frozen=True)
class Claim:
    holds: bool
    sentence: str         # what "under the hood" says when the claim holds, numbers included
    plain: str = ""       # the same claim in a beginner's words for the story, its numbers beside it


def correct(confidences: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per student: right only if the confidences are finite and the larger one is the truth."""
    return torch.isfinite(confidences).all(-1) & (confidences.argmax(-1) == labels)


def outputs_at(record: RunRecord, params: dict[str, torch.Tensor], raw: torch.Tensor) -> torch.Tensor:
    """The network's output scores (logits, or the seed's sigmoid outputs) for raw inputs under `params`."""
    with torch.no_grad():
        return functional_call(record.model, params, (record.scaler(raw),))


def log_odds(record: RunRecord, params: dict[str, torch.Tensor], raw: torch.Tensor) -> torch.Tensor:
    """ln(PASS / FAIL confidence): what decides the answer, and unlike a confidence it does not saturate."""
    out = outputs_at(record, params, raw)
    if record.config.loss == "ce":
        return out[:, 0] - out[:, 1]
    o = out.double().clamp(1e-300, 1)  # the seed's two sigmoids: compare their confidences directly
    return (o[:, 0].log() - o[:, 1].log()).to(out.dtype)


def finite_run(record: RunRecord) -> bool:
    final = record.final()
    return (record.stopped is None or not record.stopped.startswith("diverged")) and all(
        bool(torch.isfinite(t).all()) for t in final.values())


def diverged(record: RunRecord) -> Claim:
    holds = not finite_run(record)
    why = (record.stopped.removeprefix("diverged: ").removeprefix("training diverged ") if record.stopped
           else "the final weights are not finite.")
    where = why.split(":")[0].rstrip(".") if record.stopped else "by the end"
    return Claim(holds, f"**Training diverged** {md(why)} Nothing below about patterns can be trusted.",
                 f"**Training diverged** {md(where)}: its numbers grew too big to hold and became "
                 "\"not a number\". Try a smaller learning rate.")


def overshoot(record: RunRecord) -> Claim:
    """The learning rate is too high: the loss on all training students rose over an epoch by more than
    OVERSHOOT_RATIO×, or ended above where it started."""
    ev = record.epochs
    if not finite_run(record) or len(ev.epoch) == 0:
        return Claim(False, "")
    losses = torch.cat([record.train.loss_by_step[:1], ev.train_loss]).double()
    ratios = losses[1:] / losses[:-1]
    worst = int(ratios.argmax())
    rose = float(ratios[worst]) > OVERSHOOT_RATIO
    ended_higher = float(losses[-1]) > float(losses[0])
    holds = rose or ended_higher
    if rose:
        evidence = (f"the loss on all training students after the epoch went from {num(losses[worst])} to "
                    f"{num(losses[worst + 1])} over epoch {worst + 1} (×{ratios[worst]:.1f})")
    else:
        evidence = (f"the loss on all training students after the last epoch is {num(losses[-1])}, above the "
                    f"{num(losses[0])} it started at")
    recovered = float(losses[-1]) < float(losses[0]) and not not_trained(record).holds
    after = (f" It recovered later (the loss ended at {num(losses[-1])}), but only after jumping about; a smaller "
             f"`--lr` than {record.config.lr:g} walks down steadily." if recovered else
             f" Try a smaller `--lr` than {record.config.lr:g}.")
    plain_after = f" It came down later, to {num(losses[-1])}." if recovered else ""
    plain = (f"over epoch {worst + 1} the loss on all training students after the epoch went {num(losses[worst])} → "
             f"{num(losses[worst + 1])} (×{ratios[worst]:.1f})" if rose else
             f"the loss on all training students after the last epoch, {num(losses[-1])}, is above its start, "
             f"{num(losses[0])}")
    return Claim(holds, f"**The learning rate is too high**: {evidence}. Steps this big overshoot the valley "
                        f"instead of walking down into it.{after}",
                 f"**The learning rate is too high**: {plain}; the steps jump past the lowest point."
                 f"{plain_after}")


def not_trained(record: RunRecord) -> Claim:
    """No better than always giving one answer: accuracy at most the majority class's share, or every student
    given the same answer."""
    if not finite_run(record):
        return Claim(False, "")
    labels = record.training.labels
    conf = record.train.confidence_final
    right = int(correct(conf, labels).sum())
    n = len(labels)
    majority = int(torch.bincount(labels, minlength=2).max())
    answers = conf.argmax(-1)
    one_answer = bool((answers == answers[0]).all())
    holds = right <= majority or one_answer
    if one_answer:
        evidence = (f"after {len(record.log)} steps it still answers {record.label(answers[0])} for all {n} "
                    f"training students ({right} of {n} right)")
    else:
        evidence = (f"it gets {right} of {n} training students right, no better than always answering the "
                    f"commoner result ({majority} of {n})")
    return Claim(holds, f"**The network has not learned yet**: {evidence}. With lr {record.config.lr:g} its "
                        f"{len(record.log)} steps were too small, or too few, to get anywhere.",
                 f"**The network has not learned yet**: {evidence}.")


def saturated(record: RunRecord) -> Claim:
    if not finite_run(record):
        return Claim(False, "")
    margin = log_odds(record, record.final(), record.training.features).abs()
    holds = bool((margin > SATURATED_LOGIT).all())
    return Claim(holds, f"**The outputs are saturated**: every training student's log-odds is at least "
                        f"{float(margin.min()):.1f} in size, so each confidence rounds to 0% or 100% and "
                        "changing an input barely moves it; the recap on page 11 reads log-odds instead.",
                 f"**The outputs are saturated**: every training student gets 0% or 100% (scores at least "
                 f"{float(margin.min()):.1f} apart).")


CHUNK = 1 << 20  # hidden outputs worked out at a time: memory bounded by this, never by steps × students


def last_fired(record: RunRecord, units: list[int]) -> dict[int, int | None]:
    """For each of `units`: the last state in which it gave a non-zero output for some training student, as a
    row of [starting weights, after step 0, after step 1, ...] (None: in none of them). Walked backwards from
    the end in chunks of steps, and stops as soon as every unit has been seen firing."""
    log, x = record.log, record.scaler(record.training.features)
    w = torch.cat([record.initial["hidden.weight"][None], log.param("hidden.weight", "after")]) if len(log) else \
        record.initial["hidden.weight"][None]
    b = torch.cat([record.initial["hidden.bias"][None], log.param("hidden.bias", "after")]) if len(log) else \
        record.initial["hidden.bias"][None]
    found: dict[int, int | None] = {j: None for j in units}
    per_chunk = max(1, CHUNK // max(1, x.shape[0] * w.shape[1]))
    end = w.shape[0]
    while end > 0 and any(v is None for v in found.values()):
        start = max(0, end - per_chunk)
        with torch.no_grad():
            fires = (record.model.hidden_act(torch.einsum("si,rui->rsu", x, w[start:end]) + b[start:end, None, :])
                     != 0).any(1)                                      # (rows in chunk, units)
        for j in units:
            rows = fires[:, j].nonzero().flatten()
            if found[j] is None and len(rows):
                found[j] = start + int(rows[-1])
        end = start
    return found


def dead_units(record: RunRecord) -> Claim:
    """Hidden units that output exactly 0 for every training student under the final weights (ReLU), each with
    the step after which it never fired again for anyone."""
    if not finite_run(record):
        return Claim(False, "")
    final = record.final()
    with torch.no_grad():
        post = record.model.hidden_act(record.scaler(record.training.features) @ final["hidden.weight"].T
                                       + final["hidden.bias"])
    dead = [j for j in range(post.shape[1]) if bool((post[:, j] == 0).all())]
    steps = record.log.step.tolist()
    plain, deep = [], []
    for j, row in last_fired(record, dead).items():
        if row is None:
            plain.append(f"h{j + 1} has given 0 for every training student from the start")
            deep.append(f"h{j + 1} is 0 for every training student under the starting weights and after every step")
        else:
            died = steps[min(row, len(steps) - 1)]  # row r: the weights after step r - 1, so step r killed it
            plain.append(f"h{j + 1} has given 0 for every training student after step {died}, to the end")
            deep.append(f"h{j + 1} last fired for some training student before step {died}; after step {died} it is "
                        "0 for all of them to the end")
    n = len(record.training)
    return Claim(bool(dead), f"**Dead units**: {'; '.join(deep)}. Its input is never above 0, so no gradient "
                             f"flows through it and the weights into it stop changing (checked on all {n} "
                             "training students after every step).",
                 f"**Dead units**: {'; '.join(plain)}, so {'it' if len(dead) == 1 else 'they'} stopped learning.")


STRAIGHT_LINE_OFF = 2.0  # the real change and the first-order prediction this many times apart: overshooting
VISIBLE = 1e-4           # changes both below the 4 decimals a page prints are not compared


def straight_line_off(actual: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Per student: the real change in the loss and the first-order prediction disagree by more than
    STRAIGHT_LINE_OFF× (or in sign, or the real change is not a number)."""
    a, p = actual.double(), predicted.double()
    finite = torch.isfinite(a) & torch.isfinite(p)
    visible = (a.abs() >= VISIBLE) | (p.abs() >= VISIBLE)
    ratio = a / p.where(p != 0, torch.full_like(p, 1e-300))
    off = (ratio > STRAIGHT_LINE_OFF) | (ratio < 1 / STRAIGHT_LINE_OFF)   # a sign flip gives a ratio below 0
    return ~finite | (visible & off)


def straight_line_fails(record: RunRecord, names: list[str], actual: torch.Tensor, predicted: torch.Tensor) -> Claim:
    """The step was too big for the straight-line picture: for some student the first-order prediction
    −lr·gᵢ·g and the real change of the loss are more than 2× apart. The two worst are named. This is not
    overshooting (the loss may well have fallen, only by another amount than the straight line said): that
    word is kept for a step whose own students' loss went up (`overshot_step`)."""
    off = straight_line_off(actual, predicted)
    a, p = actual.double(), predicted.double()
    gap = ((a.abs() + 1e-300).log() - (p.abs() + 1e-300).log()).abs().nan_to_num(float("inf"))
    worst = sorted(off.nonzero().flatten().tolist(), key=lambda i: -float(gap[i]))[:2]
    cases = "; ".join(f"{md(names[i])}: {signed(predicted[i])} guessed, {signed(actual[i])} real" for i in worst)
    case = cases.split("; ")[0]
    return Claim(bool(off.any()),
                 f"**The first-order picture fails here** ({cases}): the prediction −lr × (gᵢ · g) and the real change "
                 f"are more than {STRAIGHT_LINE_OFF:g}× apart, because the loss curves within a step this big.",
                 f"The straight-line guess was more than {STRAIGHT_LINE_OFF:g}× off ({case}): over a step this big "
                 "the loss is curved, not straight.")


def overshot_step(record: RunRecord, k: int, loss_before: torch.Tensor, loss_after: torch.Tensor) -> Claim:
    """Step k overshot: the loss of the students it learned from went up (their mean loss after the step is
    above the one before it). The step walked against their gradient and still landed higher: it jumped past
    the lowest point in its direction. `loss_before`/`loss_after`: every training student's loss around it."""
    samples = record.log[k].samples.long()
    before, after = loss_before.double()[samples].mean(), loss_after.double()[samples].mean()
    holds = bool(torch.isfinite(after)) and bool(torch.isfinite(before)) and float(after) > float(before)
    whose = ("its student's loss" if len(samples) == 1 else f"the mean loss of its {len(samples)} students")
    b, a = num(before), num(after)
    if b == a:   # the rise is below 4 decimals: show it with more
        b, a = f"{float(before):.8f}", f"{float(after):.8f}"
    return Claim(holds, f"**This step overshot**: {whose} went up, {b} → {a}, although the step went against its "
                        "gradient: it jumped past the lowest point in that direction.",
                 f"**This step overshot**: {whose} went up, {b} → {a}; the step jumped past the lowest point.")


OVERFIT_RISE = 1.10  # held-out loss this much above its lowest epoch: a rise, not noise


def overfitting(record: RunRecord) -> Claim:
    """Over the later part of training the loss on the held-out students rises (from its lowest epoch to the
    last, by more than OVERFIT_RISE×) while the loss on all training students keeps falling."""
    ev = record.epochs
    if not finite_run(record) or ev.heldout_loss is None or len(ev.epoch) < 2:
        return Claim(False, "")
    held, train = ev.heldout_loss.double(), ev.train_loss.double()
    low = int(held.argmin())
    holds = (low < len(held) - 1 and float(held[-1]) > OVERFIT_RISE * float(held[low])
             and float(train[-1]) < float(train[low]))
    first, last = int(ev.epoch[low]) + 1, int(ev.epoch[-1]) + 1
    evidence = (f"from epoch {first} to epoch {last} the loss on the held-out students after the epoch rose from "
                f"{num(held[low])} to {num(held[-1])}, while the loss on all training students after the epoch fell "
                f"from {num(train[low])} to {num(train[-1])}")
    return Claim(holds, f"**Overfitting**: {evidence}. The network is fitting the training students' details, not "
                        "a pattern that carries over; training for fewer epochs, or on more students, would help.",
                 f"**Overfitting**: from epoch {first} to {last} the held-out loss rose, {num(held[low])} → "
                 f"{num(held[-1])}, while the training loss fell, {num(train[low])} → {num(train[-1])}: it learns "
                 "these students by heart.")


def worse_than_guessing(record: RunRecord) -> Claim:
    start = float(record.train.loss_by_step[0])
    holds = record.config.loss == "ce" and start > LN2
    return Claim(holds, f"At the start its loss on all training students is **{num(start)}**, worse than the "
                        f"{num(LN2)} (ln 2) of a coin flip that says 50% to everyone.")


def run_claims(record: RunRecord) -> dict[str, Claim]:
    return {"diverged": diverged(record), "overshoot": overshoot(record), "not_trained": not_trained(record),
            "saturated": saturated(record), "dead_units": dead_units(record), "overfitting": overfitting(record)}


def stated(claims: dict[str, Claim], plain: bool = False) -> str:
    """The sentences of the claims that hold, as paragraphs: the story's plain ones or the deep ones."""
    return "\n\n".join(c.plain if plain else c.sentence for c in claims.values() if c.holds)


