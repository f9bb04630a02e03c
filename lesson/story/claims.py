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
from nn_lesson.lesson.story.numbers import num

LN2 = math.log(2)
OVERSHOOT_RATIO = 1.5     # the loss on all students growing this much over one epoch is overshooting, not noise
SATURATED_LOGIT = 20.0    # |PASS − FAIL score| beyond this: float32 softmax rounds the confidence to 0 or 1


@dataclass(frozen=True)
class Claim:
    holds: bool
    sentence: str         # what a page says when the claim holds, numbers included


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
    return Claim(holds, f"**Training diverged** {md(why)} Nothing below about patterns can be trusted.")


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
        evidence = (f"the loss on all training students went from {num(losses[worst])} to "
                    f"{num(losses[worst + 1])} over epoch {worst + 1} (×{ratios[worst]:.1f})")
    else:
        evidence = f"the loss on all training students ended at {num(losses[-1])}, above the {num(losses[0])} it started at"
    recovered = float(losses[-1]) < float(losses[0]) and not not_trained(record).holds
    after = (f" It recovered later (the loss ended at {num(losses[-1])}), but only after jumping about; a smaller "
             f"`--lr` than {record.config.lr:g} walks down steadily." if recovered else
             f" Try a smaller `--lr` than {record.config.lr:g}.")
    return Claim(holds, f"**The learning rate is too high**: {evidence}. Steps this big overshoot the valley "
                        f"instead of walking down into it.{after}")


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
                        f"{len(record.log)} steps were too small, or too few, to get anywhere.")


def saturated(record: RunRecord) -> Claim:
    if not finite_run(record):
        return Claim(False, "")
    margin = log_odds(record, record.final(), record.training.features).abs()
    holds = bool((margin > SATURATED_LOGIT).all())
    return Claim(holds, f"**The outputs are saturated**: every training student's log-odds is at least "
                        f"{float(margin.min()):.1f} in size, so each confidence rounds to 0% or 100% and "
                        "changing an input barely moves it; the recap on page 11 reads log-odds instead.")


def dead_units(record: RunRecord) -> Claim:
    """Hidden units that output exactly 0 for every training student under the final weights (ReLU)."""
    if not finite_run(record):
        return Claim(False, "")
    final = record.final()
    with torch.no_grad():
        pre = record.scaler(record.training.features) @ final["hidden.weight"].T + final["hidden.bias"]
        post = record.model.hidden_act(pre)
    dead = [j for j in range(post.shape[1]) if bool((post[:, j] == 0).all())]
    names = ", ".join(f"h{j + 1}" for j in dead)
    return Claim(bool(dead), f"**Dead units**: {names} output{'s' if len(dead) == 1 else ''} 0 for all "
                             f"{post.shape[0]} training students (its input is never above 0), so no gradient "
                             "flows through it and the weights into it stop changing.")


def worse_than_guessing(record: RunRecord) -> Claim:
    start = float(record.train.loss_by_step[0])
    holds = record.config.loss == "ce" and start > LN2
    return Claim(holds, f"At the start its loss on all training students is **{num(start)}**, worse than the "
                        f"{num(LN2)} (ln 2) of a coin flip that says 50% to everyone.")


def run_claims(record: RunRecord) -> dict[str, Claim]:
    return {"diverged": diverged(record), "overshoot": overshoot(record), "not_trained": not_trained(record),
            "saturated": saturated(record), "dead_units": dead_units(record)}


def stated(claims: dict[str, Claim]) -> str:
    """The sentences of the claims that hold, as paragraphs."""
    return "\n\n".join(c.sentence for c in claims.values() if c.holds)


