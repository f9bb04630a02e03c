"""The learning-rate lab's page: runs that differ only in the learning rate, side by side, each given a
verdict relative to the lab's own runs, by checks on their numbers:

- diverged: a number became infinite or NaN (the lesson's `diverged` claim);
- overshoots: the loss on all training students rose more than 1.5× over an epoch, or ended above its start
  (the lesson's `overshoot` claim);
- too slow: it has not learned (the `not_trained` claim), or it ended SLOW_BEHIND× or more above the lab's
  lowest final loss while still above SLOW_LEFT of where it started: it walked the right way, too little;
- good: none of these.

An overshooting run can still end with the lab's lowest loss; the page then tells, with that run's own epochs,
when it jumped and from when on it walked down."""

from __future__ import annotations

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.claims import correct, finite_run, run_claims
from nn_lesson.lesson.story.markdown import and_list, table
from nn_lesson.lesson.story.numbers import num

SLOW_BEHIND = 10.0  # final loss this many times the lab's lowest ...
SLOW_LEFT = 0.1     # ... and still above this share of its own start: too slow
VERDICTS = ("too slow", "good", "overshoots", "diverged")


def final_loss(record: RunRecord) -> float:
    return float(record.train.loss_by_step[-1])


def lowest_final(records: list[RunRecord]) -> float | None:
    finals = [final_loss(r) for r in records if finite_run(r)]
    return min(finals) if finals else None


def verdict(record: RunRecord, records: list[RunRecord]) -> str:
    claims = run_claims(record)
    if claims["diverged"].holds:
        return "diverged"
    if claims["overshoot"].holds:
        return "overshoots"
    low, final, start = lowest_final(records), final_loss(record), float(record.train.loss_by_step[0])
    behind = low is not None and final >= SLOW_BEHIND * low and final > SLOW_LEFT * start
    return "too slow" if claims["not_trained"].holds or behind else "good"


def ended_best(record: RunRecord, records: list[RunRecord]) -> str:
    """'Too high, yet it ended best': for an overshooting run with the lab's lowest final loss, which epochs
    rose and from which epoch on its loss fell every epoch, with the numbers. '' when that is not the case."""
    if verdict(record, records) != "overshoots" or final_loss(record) != lowest_final(records):
        return ""
    losses = [float(record.train.loss_by_step[0])] + [float(v) for v in record.epochs.train_loss]
    rose = [e for e in range(1, len(losses)) if losses[e] > losses[e - 1]]
    if not rose:
        return ""
    calm = rose[-1] + 1   # from this epoch on the loss fell every epoch
    peak = max(range(1, len(losses)), key=lambda e: losses[e])
    others = [f"lr {r.config.lr:g} {num(final_loss(r))}" for r in records if r is not record and finite_run(r)]
    rose_words = and_list([str(e) for e in rose[:8]]) + (f" and {len(rose) - 8} more" if len(rose) > 8 else "")
    falling = (f", then fell in every epoch from epoch {calm} to the last ({len(losses) - 1}), down to "
               f"{num(losses[-1])}" if calm < len(losses) else f", and ended at {num(losses[-1])}")
    return (f"**lr {record.config.lr:g} is too high, yet it ended best.** Its loss on all training students after "
            f"the epoch started at {num(losses[0])}, rose in epoch{'s' if len(rose) > 1 else ''} {rose_words} (highest {num(losses[peak])}, "
            f"after epoch {peak}){falling}, below " + and_list(others) + ". Its big steps jumped past the lowest "
            "point while the network was still far off; once they stopped jumping, the same big steps walked down "
            "faster than the smaller ones. It got there by luck of the jumps: nothing promised that the jumping "
            "would stop.")


def lab_page(records: list[RunRecord]) -> tuple[str, str]:
    low = lowest_final(records)
    rows = []
    for r in records:
        right = int(correct(r.train.confidence_final, r.training.labels).sum())
        ratio = final_loss(r) / low if finite_run(r) and low else None
        times = "—" if ratio is None else f"×{ratio:.0f}" if ratio >= 10 else f"×{ratio:.1f}"
        rows.append([f"{r.config.lr:g}", num(r.train.loss_by_step[0]), num(final_loss(r)), times,
                     f"{right} of {len(r.training)}", verdict(r, records)])
    words = {
        "too slow": f"the loss fell the right way but too little: it ended {SLOW_BEHIND:g}× or more above the lab's "
                    f"lowest and above {SLOW_LEFT:g} of where it started (or the network has not learned)",
        "good": "the loss falls steadily and the students are learned",
        "overshoots": "the steps jump past the lowest point: the loss rose more than 1.5× over an epoch, or ended "
                      "above its start",
        "diverged": "a number became infinite or NaN and training stopped",
    }
    seen = [v for v in VERDICTS if any(verdict(r, records) == v for r in records)]
    explained = "\n".join(f"- **{v}**: {words[v]}" for v in seen)
    best = [s for s in (ended_best(r, records) for r in records) if s]
    return "the learning-rate lab", (
        "The same network, data and starting weights, trained with different learning rates (every other "
        "setting equal). Each verdict is chosen by a check on that run's numbers, beside the lab's other runs:\n\n"
        + table(["lr", "loss on all training students before training", "after the last epoch",
                 "against the lab's lowest", "training students right", "verdict"], rows)
        + "\n\n" + explained + "".join("\n\n" + b for b in best))
