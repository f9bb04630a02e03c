"""The learning-rate lab's page: runs that differ only in the learning rate, side by side, each given a
verdict by the same claims the lesson's own pages use."""

from __future__ import annotations

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.claims import correct, run_claims
from nn_lesson.lesson.story.numbers import num
from nn_lesson.lesson.story.pages import table


def verdict(record: RunRecord) -> str:
    claims = run_claims(record)
    if claims["diverged"].holds:
        return "diverged"
    if claims["overshoot"].holds:
        recovered = float(record.train.loss_by_step[-1]) < float(record.train.loss_by_step[0])
        return "overshoots, then recovers" if recovered and not claims["not_trained"].holds else "overshoots"
    if claims["not_trained"].holds:
        return "too slow"
    return "good"


def lab_page(records: list[RunRecord]) -> tuple[str, str]:
    rows = []
    for r in records:
        right = int(correct(r.train.confidence_final, r.training.labels).sum())
        rows.append([f"{r.config.lr:g}", num(r.train.loss_by_step[0]), num(r.train.loss_by_step[-1]),
                     f"{right} of {len(r.training)}", verdict(r)])
    words = {
        "too slow": "each step is so small that the loss hardly moves",
        "good": "the loss falls and the students are learned",
        "overshoots": "the steps jump past the valley: the loss rises over an epoch or ends above its start",
        "overshoots, then recovers": "the loss jumps up over an epoch before it settles: it got there, but "
                                     "by luck of the jumps, not by walking down",
        "diverged": "a number became infinite or NaN and training stopped",
    }
    seen = []
    for r in records:
        v = verdict(r)
        if v not in seen:
            seen.append(v)
    explained = "\n".join(f"- **{v}**: {words[v]}" for v in seen)
    return "the learning-rate lab", (
        "The same network, data and starting weights, trained with different learning rates (every other "
        "setting equal). Each verdict is chosen by a check on that run's numbers:\n\n"
        + table(["lr", "loss before", "loss after", "training students right", "verdict"], rows)
        + "\n\n" + explained)
