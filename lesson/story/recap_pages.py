"""Pages 10-11: the final test on held-out students, and what the network learned (study, sleep or score?)."""

from __future__ import annotations

import torch

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.baseline import logistic_baseline
from nn_lesson.lesson.story.claims import correct, log_odds, overfitting, run_claims
from nn_lesson.lesson.story.escape import md
from nn_lesson.lesson.story.markdown import and_list, table
from nn_lesson.lesson.story.names import INPUT_LABELS
from nn_lesson.lesson.story.numbers import num, pct, signed
from nn_lesson.lesson.story.page import Page

FEATURE_TITLES = ("hours studied", "hours slept", "previous score %")
INPUT_WORDS = ("hours studied", "hours slept", "previous score")
FINDING_WORDS = ("hours of study", "hours of sleep", "the previous score")  # plural, plural, singular
CANNOT_TELL = 1.25  # the strongest input must beat the next by this factor to be named the answer
DECIDES = 0.25      # an input that raises the lean by at least this share of the strongest one "decides"


def final_test(record: RunRecord) -> Page:
    if record.heldout is None:
        return Page("10 the final test", "This data has no held-out students, so there is no final test: add rows "
                                         "with the column \"split\" set to \"heldout\" to keep some students out of training.", "")
    conf, labels, raw = record.heldout.confidence_final, record.held_out.labels, record.held_out.features
    ok = correct(conf, labels)
    rows = []
    for i, name in enumerate(record.heldout_names):
        guess = record.label(conf[i].argmax()) if bool(torch.isfinite(conf[i]).all()) else "none (not a number)"
        rows.append([md(name), *[f"{float(v):g}" for v in raw[i]], pct(conf[i, 0]), pct(conf[i, 1]),
                     guess, record.label(labels[i]), "right" if bool(ok[i]) else "wrong"])
    # the story's table leaves the FAIL confidence to the depth: the guess says which is larger, and nine
    # columns do not fit beside the network
    story_rows = [r[:5] + r[6:] for r in rows]
    epochs = record.epochs
    n = len(epochs.epoch)
    shown = sorted({int(i) for i in torch.linspace(0, n - 1, min(n, 10)).round()}) if n else []
    history = [[str(int(epochs.epoch[i]) + 1), num(epochs.train_loss[i]), num(epochs.heldout_loss[i])] for i in shown]
    story = (f"The test: the trained network meets **{len(rows)} held-out students**, kept out of training, so it "
             f"cannot have learned their answers by heart. It got **{int(ok.sum())} of {len(rows)}** right.\n\n"
             + table(["student", *FEATURE_TITLES, "PASS confidence", "guess", "truth", "right?"], story_rows)
             + "\n\nHow the loss fell, epoch by epoch:\n\n"
             + table(["epoch", "loss on all training students after the epoch",
                      "loss on the held-out students after the epoch"], history))
    over = overfitting(record)
    if over.holds:
        story += "\n\n" + over.plain
    full = [[str(int(epochs.epoch[i]) + 1), num(epochs.step_loss_mean[i]), num(epochs.train_loss[i]),
             num(epochs.heldout_loss[i]), pct(epochs.train_accuracy[i]), pct(epochs.heldout_accuracy[i])] for i in shown]
    deep = ("The held-out students with both confidences:\n\n"
            + table(["student", *FEATURE_TITLES, "PASS confidence", "FAIL confidence", "guess", "truth", "right?"],
                    rows) + "\n\n"
            "Three loss figures, each with one name wherever it is shown: the **mean loss of the epoch's steps** "
            "(what the terminal prints while training: each step's loss before its own update, averaged), the "
            "**loss on all training students after the epoch** (every training student under the weights at the "
            "epoch's end), and the **loss after this step** (pages 05, 07, 09). The first lags behind the second: "
            "its early steps ran on weights the epoch later improved.\n\n"
            + table(["epoch", "mean loss of the epoch's steps", "loss on all training students after the epoch",
                     "loss on the held-out students after the epoch", "accuracy, training", "accuracy, held-out"], full))
    deep += "\n\n" + (over.sentence if over.holds else
                      "No overfitting: the held-out loss did not rise by more than 10% from its lowest epoch to the "
                      "end while the training loss fell.")
    return Page("10 the final test", story, deep)


def input_effects(record: RunRecord, final: dict[str, torch.Tensor]) -> tuple[list[list[str]], list[float], list[float]]:
    """Each training student changed in one input, the others kept: the mean change in log-odds of PASS per
    change (one hour, one hour, 10 points), and per one spread of the input (so hours and points compare)."""
    raw = record.training.features
    base = log_odds(record, final, raw)
    rows, per_change, per_spread = [], [], []
    for f, (delta, title) in enumerate(((1.0, "one more hour of study"), (1.0, "one more hour of sleep"),
                                        (10.0, "10 more points of previous score"))):
        moved = raw.clone()
        moved[:, f] += delta
        change = log_odds(record, final, moved) - base
        spread = change.mean() * record.scaler.std[f] / delta
        per_change.append(float(change.mean()))
        per_spread.append(float(spread))
        rows.append([title, signed(change.mean()), signed(change.min()), signed(change.max()), signed(spread)])
    return rows, per_change, per_spread


def what_it_learned(record: RunRecord) -> Page:
    """Study, sleep or score? In plain words for the story; log-odds, the baseline and the strongest unit below."""
    title = "11 what the network learned"
    claims = run_claims(record)
    if claims["diverged"].holds:
        return Page(title, claims["diverged"].plain + " There is no pattern to read.",
                    claims["diverged"].sentence)
    final = record.final()
    rows, per_change, per_spread = input_effects(record, final)
    shorts = ("more study", "more sleep", "a higher previous score")
    surprises = [f"{shorts[f]} did **not** raise it on average ({signed(per_change[f])})"
                 for f in range(3) if per_change[f] <= 0]
    story = [("**Study, sleep or score?** Each training student is changed in one input (one more hour of study, "
              "of sleep, or 10 more points) and the trained network asked again. Its **lean** towards PASS says how "
              "much more it believes PASS than FAIL: above 0 it answers PASS. The last column scales each change to "
              "a **typical difference** between students in that input (its usual spread).\n\n"
              + table(["change", "lean towards PASS, average change", "per typical difference between students"],
                      [[r[0], r[1], r[4]] for r in rows]))]
    if claims["not_trained"].holds:
        story.append(claims["not_trained"].plain + " So it has no answer to the question yet.")
    else:
        hoped = "We hoped that more study, more sleep and a higher previous score would each raise the lean."
        story.append(f"{hoped} They did." if not surprises else f"{hoped} Not all did: " + "; ".join(surprises) + ".")
        story.append(conclusion(record, per_spread))
    deep = ["The lean is the **log-odds** of PASS, ln(PASS / FAIL confidence) (for cross-entropy exactly the "
            "PASS score minus the FAIL score): what decides the answer, and unlike a confidence it does not flatten "
            "out near 0% or 100%. Per change, with the smallest and largest over the students:\n\n"
            + table(["change", "mean change in log-odds", "smallest", "largest", "per one spread of the input"], rows)]
    if not claims["not_trained"].holds:
        deep.append(answer(per_spread))
    if claims["saturated"].holds:
        deep.append(claims["saturated"].sentence)
    deep.append(strongest_unit(record, final))
    deep.append(baseline_text(record))
    return Page(title, "\n\n".join(story), "\n\n".join(deep))


def conclusion(record: RunRecord, per_spread: list[float]) -> str:
    """The run's finding in plain words, sorted by a predicate on each input's effect per typical difference:
    it decides (raises the lean, by at least DECIDES of the strongest), matters little, or does not raise it."""
    strongest = max(abs(e) for e in per_spread) or 1.0
    decide = [f for f in range(3) if per_spread[f] > 0 and per_spread[f] >= DECIDES * strongest]
    little = [f for f in range(3) if 0 < per_spread[f] < DECIDES * strongest]
    against = [f for f in range(3) if per_spread[f] <= 0]

    def named(group: list[int]) -> str:
        return and_list([FINDING_WORDS[f] for f in group])

    def one(group: list[int]) -> bool:  # "the previous score decides", "hours of sleep decide"
        return group == [2]

    def numbers(group: list[int]) -> str:
        return and_list([signed(per_spread[f]) for f in group])
    n = len(record.names)
    parts = []
    if decide:
        parts.append(f"On these {n} students, **{named(decide)} decide{'s' if one(decide) else ''}**: "
                     f"more of {'it' if len(decide) == 1 else 'either' if len(decide) == 2 else 'any'} pushes "
                     f"the network towards PASS ({numbers(decide)} per typical difference).")
    if little:
        parts.append(f"{named(little)[0].upper() + named(little)[1:]} matter{'s' if one(little) else ''} little "
                     f"({numbers(little)}, under a quarter of the strongest).")
    if against:
        parts.append(f"**{named(against)[0].upper() + named(against)[1:]} alone do{'es' if one(against) else ''}n't**: more of "
                     f"{'it' if len(against) == 1 else 'them'}, with the rest unchanged, does not push it towards "
                     f"PASS ({numbers(against)}).")
    return " ".join(parts)


def answer(effects: list[float]) -> str:
    """Which input matters most, per one spread of each (so hours and points compare); or that the data cannot tell."""
    order = sorted(range(3), key=lambda f: -abs(effects[f]))
    first, second = order[0], order[1]
    ratio = abs(effects[first]) / max(abs(effects[second]), 1e-12)
    if ratio < CANNOT_TELL:
        return (f"**Which input matters most?** The data cannot tell {INPUT_WORDS[first]} from {INPUT_WORDS[second]}: "
                f"one spread of each moves the log-odds by {signed(effects[first])} and {signed(effects[second])} "
                f"(less than {CANNOT_TELL}× apart). Six students are few.")
    return (f"**Which input matters most?** For this network, **{INPUT_WORDS[first]}**: one spread of it moves the "
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


def baseline_text(record: RunRecord) -> str:
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
