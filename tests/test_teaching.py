"""Every claim a page makes is true for its run, and a claim a page leaves out is false for it.

The predicates here are worked out again from the run record with a plain StudentNet carrying the trained
weights, independently of lesson.story.claims, on runs chosen so that each claim is true on some and false
on others."""

from __future__ import annotations

import math
import re

import pytest
import torch

from conftest import run_cli
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import LessonConfig, build_loss, build_model, loss_targets
from nn_lesson.lesson.run.train import Diverged, train
from nn_lesson.lesson.story.page import Page
from nn_lesson.lesson.story.per_student import step_effect

from conftest import TEACHING_MATRIX as MATRIX

CLAIMS = {  # the words that state each claim on page 01
    "diverged": "**Training diverged**", "overshoot": "**The learning rate is too high**",
    "not_trained": "**The network has not learned yet**", "saturated": "**The outputs are saturated**",
    "dead_units": "**Dead units**", "overfitting": "**Overfitting**",
}


@pytest.fixture(scope="module")
def runs(teaching_runs) -> dict[str, tuple[RunRecord, dict[str, Page]]]:
    return teaching_runs


def trained_net(record: RunRecord) -> torch.nn.Module:
    net = build_model(record.config)
    net.load_state_dict(record.final())
    return net


def truths(record: RunRecord) -> dict[str, bool]:
    """Each claim's predicate, from the record's numbers and a plain forward pass."""
    final_finite = all(bool(torch.isfinite(t).all()) for t in record.final().values())
    if not final_finite or (record.stopped or "").startswith("diverged"):
        return {"diverged": True, "overshoot": False, "not_trained": False, "saturated": False, "dead_units": False,
                "overfitting": False}
    net = trained_net(record)
    x = record.scaler(record.training.features)
    labels = record.training.labels
    with torch.no_grad():
        scores = net(x)
        hidden = net.hidden_act(net.hidden(x))
    guesses = scores.argmax(1)
    right = int((guesses == labels).sum())
    majority = int(torch.bincount(labels, minlength=2).max())
    per_epoch = [float(record.train.loss_by_step[0])] + [float(v) for v in record.epochs.train_loss]
    rises = [b / a for a, b in zip(per_epoch, per_epoch[1:])]
    if record.config.loss == "ce":
        margin = (scores[:, 0] - scores[:, 1]).abs()
    else:
        margin = (scores[:, 0].double().log() - scores[:, 1].double().log()).abs()
    return {
        "diverged": False,
        "overshoot": max(rises) > 1.5 or per_epoch[-1] > per_epoch[0],
        "not_trained": right <= majority or bool((guesses == guesses[0]).all()),
        "saturated": bool((margin > 20).all()),
        "dead_units": bool((hidden == 0).all(0).any()),
        "overfitting": overfits(record),
    }


_EPOCH_END: dict[int, tuple] = {}  # id(record) -> its losses: worked out once


def epoch_end_losses(record: RunRecord) -> tuple[list[float], list[float]]:
    """The loss on all training and on all held-out students under each epoch's last weights, worked out
    again with a plain StudentNet (not read from the record's evaluations)."""
    if id(record) not in _EPOCH_END:
        _EPOCH_END[id(record)] = (record, _epoch_end_losses(record))  # the record kept so its id stays its own
    return _EPOCH_END[id(record)][1]


def _epoch_end_losses(record: RunRecord) -> tuple[list[float], list[float]]:
    log, net = record.log, build_model(record.config)
    ends = [i for i in range(len(log)) if i == len(log) - 1 or int(log.epoch[i + 1]) != int(log.epoch[i])]
    train_x, held_x = record.scaler(record.training.features), record.scaler(record.held_out.features)
    train_y, held_y = record.training.labels, record.held_out.labels
    loss = build_loss(record.config)
    train_losses, held_losses = [], []
    for row in ends:
        net.load_state_dict(log[row].after)
        with torch.no_grad():
            train_losses.append(float(loss(net(train_x), loss_targets(record.config, train_y))))
            held_losses.append(float(loss(net(held_x), loss_targets(record.config, held_y))))
    return train_losses, held_losses


def overfits(record: RunRecord) -> bool:
    """Held-out loss rising over the later part of training (lowest epoch to the last, by more than 10%)
    while the training loss falls over the same epochs."""
    train_losses, held = epoch_end_losses(record)
    low = min(range(len(held)), key=lambda e: held[e])
    return low < len(held) - 1 and held[-1] > 1.1 * held[low] and train_losses[-1] < train_losses[low]


@pytest.mark.parametrize("name", list(MATRIX))
def test_page_01_states_exactly_the_claims_that_hold(runs, name):
    record, pages = runs[name]
    text = pages["01 the challenge"].story
    for claim, holds in truths(record).items():
        assert (CLAIMS[claim] in text) == holds, (name, claim, holds)


def test_the_matrix_makes_every_claim_true_somewhere_and_false_somewhere(runs):
    seen = {claim: {truths(record)[claim] for record, _ in runs.values()} for claim in CLAIMS}
    assert all(values == {True, False} for values in seen.values()), seen


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_pattern_is_claimed_only_when_it_is_there(runs, name):
    record, pages = runs[name]
    text = pages["11 what the network learned"].story
    t = truths(record)
    if t["diverged"]:
        assert "There is no pattern to read" in text and "appeared" not in text
        return
    net = trained_net(record)
    raw = record.training.features
    with torch.no_grad():
        base = net(record.scaler(raw))
        raises = []
        for f, delta in enumerate((1.0, 1.0, 10.0)):
            moved = raw.clone()
            moved[:, f] += delta
            out = net(record.scaler(moved))
            if record.config.loss == "ce":
                change = (out[:, 0] - out[:, 1]) - (base[:, 0] - base[:, 1])
            else:
                change = (out[:, 0].log() - out[:, 1].log()) - (base[:, 0].log() - base[:, 1].log())
            raises.append(float(change.mean()) > 0)
    appeared = "would each raise the lean. They did." in text
    assert appeared == (all(raises) and not t["not_trained"]), (name, raises)
    if t["not_trained"]:
        assert "no answer to the question yet" in text


@pytest.mark.parametrize("name", list(MATRIX))
def test_right_answers_are_counted_and_nan_is_never_right(runs, name):
    record, pages = runs[name]
    if record.heldout is None:
        return
    conf = record.heldout.confidence_final
    right = int((torch.isfinite(conf).all(1) & (conf.argmax(1) == record.held_out.labels)).sum())
    assert f"It got **{right} of {len(conf)}** right" in pages["10 the final test"].story


def test_a_student_with_nan_confidences_is_wrong():
    from nn_lesson.lesson.story.claims import correct
    conf = torch.tensor([[float("nan"), float("nan")], [0.9, 0.1], [float("nan"), 0.2]])
    assert correct(conf, torch.tensor([0, 0, 1])).tolist() == [False, True, False]


def test_the_start_is_compared_with_a_coin_flip(runs):
    for name, (record, pages) in runs.items():
        start = float(record.train.loss_by_step[0])
        worse = record.config.loss == "ce" and start > math.log(2)
        assert ("worse than the 0.6931 (ln 2) of a coin flip" in pages["03 the starting weights"].deep) == worse, name


def test_page_04_defines_the_loss_with_the_students_numbers(runs):
    record, pages = runs["default"]
    snap = record.log[0]
    conf = snap.outputs.softmax(1)[0]
    expected = f"−ln({float(conf[0]):.4f}) = {-math.log(float(conf[0])):.4f}"
    assert expected in pages["04 the network meets Sarah"].story
    batch_record, batch_pages = runs["batch 3"]
    page = next(p.story for title, p in batch_pages.items() if title.startswith("04"))
    assert "is the **mean** of theirs" in page and f"= {float(batch_record.log[0].loss):.4f}" in page


# ---- per-student gradients, checked against per-student backward() in float64 ----

def test_per_student_gradients_match_backward_and_average_to_the_batch_gradient(runs):
    record, _ = runs["batch 3"]
    effect = step_effect(record, 0)
    net = build_model(record.config).double()
    net.load_state_dict({n: t.double() for n, t in record.log[0].before.items()})
    x = record.scaler(record.training.features).double()
    y = record.training.labels
    for i in range(len(x)):
        net.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in net.named_parameters():
            assert torch.allclose(effect.grads[name][i].double(), p.grad, rtol=1e-4, atol=1e-6), (i, name)
    idx = record.log[0].samples.long()
    for name, g in record.log[0].grads.items():
        assert torch.allclose(effect.grads[name][idx].mean(0), g, rtol=1e-5, atol=1e-7)


def test_the_first_order_change_predicts_the_real_one_for_a_small_step():
    record = train(LessonConfig(lr=0.01, epochs=1))
    effect = step_effect(record, 0)
    real = effect.loss_after - effect.loss_before
    assert torch.allclose(effect.predicted_change, real, rtol=0.05, atol=1e-5)
    assert bool((effect.agreement > 0).any()) and bool((effect.agreement < 0).any())  # helps some, hurts others
    signs_agree = torch.sign(effect.predicted_change) == torch.sign(real)
    assert bool(signs_agree.all())


def test_learning_page_names_who_was_helped_and_hurt(runs):
    record, pages = runs["default"]
    effect = step_effect(record, 0)
    text = pages["05 the network learns from Sarah"].story
    hurt = [n for i, n in enumerate(record.names) if float(effect.loss_after[i]) > float(effect.loss_before[i])]
    assert hurt and all(f"{n} |" in text or f"{n} (this step)" in text for n in hurt)
    assert "hurt " + ", ".join(hurt) in text


# ---- the data has a real question ----

def test_no_single_input_separates_pass_from_fail(runs):
    record, _ = runs["default"]
    for table in (record.training, record.held_out):
        for f in range(3):
            passed = table.features[table.labels == 0, f]
            failed = table.features[table.labels == 1, f]
            assert not (passed.min() > failed.max() or failed.min() > passed.max()), f
    x = record.scaler(record.training.features)
    corr = torch.corrcoef(x.T)
    assert float(corr.triu(1).abs().max()) < 0.8  # not nearly collinear


@pytest.mark.parametrize("step", [0, 5, 48, 120, 359])
def test_step_titles_are_clean_for_any_step(written_run, tmp_path, step):
    run_dir, _ = written_run
    result = run_cli("--step", str(step), "--snapshot", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"── step {step}: the network meets "), first


def test_pages_keep_their_line_breaks_in_the_terminal(runs):
    """A diverged run's page 01 (it holds escaped user text) prints with its paragraphs, not U+FFFD."""
    from nn_lesson.lesson.story.terminal import page
    record, pages = runs["lr 1e30 relu"]
    printed = page("01 the challenge", pages["01 the challenge"].story)
    assert "\ufffd" not in printed and "\n\n" in printed
    assert "Training diverged at step 2" in printed


# ---- round 2: what a step really did, overshooting, overfitting, dead units, the conclusion ----

def each_students_loss(record: RunRecord, params: dict[str, torch.Tensor]) -> torch.Tensor:
    net = build_model(record.config)
    net.load_state_dict(params)
    loss = build_loss(record.config)
    x, y = record.scaler(record.training.features), loss_targets(record.config, record.training.labels)
    with torch.no_grad():
        return torch.stack([loss(net(x[i:i + 1]), y[i:i + 1]) for i in range(len(x))])


def first_order_change(record: RunRecord, k: int) -> torch.Tensor:
    """−lr × (gᵢ · g): each student's own gradient by its own backward(), against the step's recorded one."""
    snap = record.log[k]
    net = build_model(record.config)
    net.load_state_dict(snap.before)
    loss = build_loss(record.config)
    x, y = record.scaler(record.training.features), loss_targets(record.config, record.training.labels)
    out = []
    for i in range(len(x)):
        net.zero_grad()
        loss(net(x[i:i + 1]), y[i:i + 1]).backward()
        out.append(sum((p.grad * snap.grads[n]).sum() for n, p in net.named_parameters()))
    return -snap.lr * torch.stack(out)


def everyone_rows(story: str) -> dict[str, list[str]]:
    rows = re.findall(r"^\| ([^|]+?)(?: \(this step\))? \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \| "
                      r"(helped|hurt|no change|not a number) \|$", story, re.M)
    return {r[0]: list(r[1:]) for r in rows}


SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")


def shown(text: str) -> float:
    """A number as a page prints it: -0.0477, +0.2529, 0, 1.373×10²⁹, -6.5×10⁻⁷."""
    text = text.strip().replace("−", "-")
    if "×10" in text:
        mantissa, exponent = text.split("×10")
        return float(mantissa) * 10 ** int(exponent.translate(SUPERSCRIPTS))
    return float(text)


def half_unit(text: str) -> float:
    """Half a unit of the last digit printed: how far the number may be from what it shows."""
    text = text.strip().replace("−", "-")
    mantissa, _, exponent = text.partition("×10")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    scale = 10 ** int(exponent.translate(SUPERSCRIPTS)) if exponent else 1
    return 0.5 * 10 ** -decimals * scale


def off_by_more_than_2x(actual: torch.Tensor, guess: torch.Tensor) -> bool:
    for a, g in zip(actual.double().tolist(), guess.double().tolist()):
        if not (math.isfinite(a) and math.isfinite(g)):
            return True
        if max(abs(a), abs(g)) >= 1e-4 and (a * g <= 0 or not 0.5 <= a / g <= 2):
            return True
    return False


def test_helped_and_hurt_follow_the_real_change_with_the_guess_beside_it(runs):
    """Pages 05/07/09: each student's loss after the step and 'helped' exactly when it fell, worked out with a
    plain StudentNet; the straight-line guess beside it; overshooting said exactly when the two are >2× apart."""
    overshooting, label_differs_from_guess = set(), set()
    for name, (record, pages) in runs.items():
        for k in range(min(3, len(record.log))):
            story = next(p.story for t, p in pages.items() if t.startswith(f"{5 + 2 * k:02d}"))
            rows = everyone_rows(story)
            assert list(rows) == list(record.names), (name, k)
            before, after = each_students_loss(record, record.log[k].before), each_students_loss(record, record.log[k].after)
            guess = first_order_change(record, k)
            for i, student in enumerate(record.names):
                shown_before, shown_after, shown_change, shown_guess, label = rows[student]
                real = float(after[i] - before[i])
                if not math.isfinite(real):
                    assert label == "not a number", (name, k, student)
                    continue
                assert shown(shown_after) == pytest.approx(float(after[i]), abs=max(2e-4, 2 * half_unit(shown_after)),
                                                           rel=1e-4), (name, k, student)
                assert shown(shown_before) == pytest.approx(float(before[i]), abs=max(2e-4, 2 * half_unit(shown_before)),
                                                            rel=1e-4), (name, k, student)
                assert label == ("helped" if real < 0 else "hurt" if real > 0 else "no change"), (name, k, student, real)
                if label in ("helped", "hurt"):       # never beside a change that prints as zero
                    assert shown(shown_change) != 0, (name, k, student, shown_change)
                if math.isfinite(float(guess[i])):
                    assert shown(shown_guess) == pytest.approx(float(guess[i]), abs=max(2e-4, 2 * half_unit(shown_guess)),
                                                               rel=1e-3), (name, k, student)
                    if (real < 0) != (float(guess[i]) < 0):
                        label_differs_from_guess.add(name)
            says = "over a step this big the loss is curved, not straight" in story
            finite = torch.isfinite(after - before)       # a loss that is not a number is said as such, no curve
            assert says == off_by_more_than_2x((after - before)[finite], guess[finite]), (name, k)
            assert "overshooting" not in story, (name, k)     # the word belongs to a loss that went up
            if says:
                overshooting.add(name)
    assert overshooting and set(runs) - overshooting, overshooting          # true on some runs, false on others
    assert label_differs_from_guess, "no run where the real change and the guess disagree in sign"


def test_overfitting_is_said_on_the_final_test_exactly_when_held_out_loss_rises(runs):
    seen = set()
    for name, (record, pages) in runs.items():
        holds = truths(record)["overfitting"]
        story = pages["10 the final test"].story
        assert ("**Overfitting**" in story) == holds, name
        if holds:
            seen.add(name)
            train_losses, held = epoch_end_losses(record)
            low = min(range(len(held)), key=lambda e: held[e])
            assert f"from epoch {low + 1} to {len(held)} the held-out loss rose, {held[low]:.4f} → {held[-1]:.4f}" in story
            assert f"training loss fell, {train_losses[low]:.4f} → {train_losses[-1]:.4f}" in story
    assert seen and set(runs) - seen


def dead_since(record: RunRecord) -> dict[int, int | None]:
    """Unit -> the step after which it gave 0 for every training student to the end (None: from the start)."""
    net, x, log = build_model(record.config), record.scaler(record.training.features), record.log
    states = [record.initial] + [log[r].after for r in range(len(log))]
    fires = []
    for state in states:
        net.load_state_dict(state)
        with torch.no_grad():
            fires.append((net.hidden_act(net.hidden(x)) != 0).any(0))
    fires = torch.stack(fires)
    out = {}
    for j in range(fires.shape[1]):
        if not bool(fires[-1, j]):
            alive = [r for r in range(len(states)) if bool(fires[r, j])]
            out[j] = int(log.step[alive[-1]]) if alive else None
    return out


def test_a_dead_unit_is_named_with_the_step_it_died(runs):
    seen = set()
    for name, (record, pages) in runs.items():
        if truths(record)["diverged"]:
            continue
        dead = dead_since(record)
        story = pages["01 the challenge"].story
        assert ("**Dead units**" in story) == bool(dead), name
        for j, step in dead.items():
            seen.add(name)
            when = "from the start" if step is None else f"after step {step}, to the end"
            assert f"h{j + 1} has given 0 for every training student {when}" in story, (name, j, step)
    assert seen and set(runs) - seen


FINDING = ("hours of study", "hours of sleep", "the previous score")


def test_the_conclusion_names_what_decides_from_the_numbers(runs):
    """Page 11's finding in plain words: the inputs that raise the lean (by at least a quarter of the strongest)
    'decide', those that do not raise it 'alone don't', worked out per typical difference with a plain net."""
    alone_dont = set()
    for name, (record, pages) in runs.items():
        t = truths(record)
        if t["diverged"] or t["not_trained"]:
            continue
        net, raw = trained_net(record), record.training.features
        effects = []
        with torch.no_grad():
            base = net(record.scaler(raw))
            for f, delta in enumerate((1.0, 1.0, 10.0)):
                moved = raw.clone()
                moved[:, f] += delta
                out = net(record.scaler(moved))
                if record.config.loss == "ce":
                    change = (out[:, 0] - out[:, 1]) - (base[:, 0] - base[:, 1])
                else:
                    change = (out[:, 0].log() - out[:, 1].log()) - (base[:, 0].log() - base[:, 1].log())
                effects.append(float(change.mean()) * float(raw[:, f].std(correction=0)) / delta)
        strongest = max(abs(e) for e in effects)
        story = pages["11 what the network learned"].story
        decide = re.search(r"\*\*([^*]+) decides?\*\*", story)
        against = re.search(r"\*\*([^*]+) alone do(?:es)?n't\*\*", story)
        expect_decide = {FINDING[f] for f in range(3) if effects[f] > 0 and effects[f] >= 0.25 * strongest}
        expect_against = {FINDING[f] for f in range(3) if effects[f] <= 0}
        assert {w for w in FINDING if decide and w.lower() in decide.group(1).lower()} == expect_decide, name
        assert {w for w in FINDING if against and w.lower() in against.group(1).lower()} == expect_against, name
        if expect_against:
            alone_dont.add(name)
    assert alone_dont and set(runs) - alone_dont, alone_dont


# ---- the learning-rate lab: verdicts relative to the lab's own runs ----

def lab_truths(records: list[RunRecord]) -> list[str]:
    """Each run's verdict, worked out again: diverged; overshoots; too slow (not learned, or 10× or more above
    the lab's lowest final loss and above a tenth of its own start); else good."""
    finals = {id(r): epoch_end_losses(r)[0][-1] for r in records if not truths(r)["diverged"]}
    low = min(finals.values())
    out = []
    for r in records:
        t = truths(r)
        if t["diverged"]:
            out.append("diverged")
        elif t["overshoot"]:
            out.append("overshoots")
        else:
            start = float(each_students_loss(r, r.initial).mean())
            final = finals[id(r)]
            out.append("too slow" if t["not_trained"] or (final >= 10 * low and final > 0.1 * start) else "good")
    return out


def rising_epochs(record: RunRecord) -> list[int]:
    losses = [float(each_students_loss(record, record.initial).mean())] + epoch_end_losses(record)[0]
    return [e for e in range(1, len(losses)) if losses[e] > losses[e - 1]]


def lab_rows(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^\| ([\d.e+-]+) \|.*\| (too slow|good|overshoots|diverged) \|$", text, re.M)


@pytest.mark.parametrize("lab", [("lr 0.001", "default", "lr 5"), ("default", "lr 50", "lr 1e30 relu")])
def test_lab_verdicts_are_relative_to_the_labs_own_runs(runs, lab):
    from nn_lesson.lesson.story.lab import lab_page
    records = [runs[name][0] for name in lab]
    _, text = lab_page(records)
    assert [v for _, v in lab_rows(text)] == lab_truths(records)
    verdicts = lab_truths(records)
    finals = [epoch_end_losses(r)[0][-1] if v != "diverged" else math.inf for r, v in zip(records, verdicts)]
    for r, v, final in zip(records, verdicts, finals):
        best = v == "overshoots" and final == min(finals)
        assert (f"**lr {r.config.lr:g} is too high, yet it ended best.**" in text) == best, (lab, r.config.lr)


def test_the_lab_help_example_gives_the_verdicts_it_promises(tmp_path):
    """`nn-lesson lab --help` shows an example and its verdicts; run exactly that and read the verdicts back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    help_text = run_cli("lab", "--help", cwd=tmp_path).stdout
    example = re.search(r"nn-lesson lab ((?:--lr)(?: [\d.]+)+)\s+verdicts: ([a-z ,]+?)(?: \(|\n)", help_text)
    assert example, help_text
    args, promised = example.group(1).split(), [v.strip() for v in example.group(2).split(",")]
    result = run_cli("lab", *args, "--logdir", str(tmp_path / "runs"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    acc = EventAccumulator(str(tmp_path / "runs/lab-comparison"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("lab/the learning-rate lab")[0].tensor_proto.string_val[0].decode()
    assert [v for _, v in lab_rows(text)] == promised
    records = [RunRecord.load(tmp_path / "runs" / f"lab-lr{lr}-ce-sigmoid" / "snapshots.npz") for lr in args[1:]]
    assert lab_truths(records) == promised                       # the verdicts hold, worked out again
    verdicts = lab_truths(records)
    for r, v in zip(records, verdicts):                          # "too high, yet it ended best", with its epochs
        finals = [epoch_end_losses(x)[0][-1] for x in records]
        if v == "overshoots" and epoch_end_losses(r)[0][-1] == min(finals):
            m = re.search(rf"\*\*lr {r.config.lr:g} is too high, yet it ended best\.\*\*.*?rose in epochs? ([\d, and]+?)"
                          r"(?: and \d+ more)? \(", text)
            assert m, text
            shown = [int(e) for e in re.findall(r"\d+", m.group(1))]
            assert shown == rising_epochs(r)[:8]


# ---- round 3: every sentence true at the precision it prints, as a beginner reads it ----

@pytest.fixture(scope="module")
def overshooting_run() -> tuple[RunRecord, dict[str, Page]]:
    """lr 5 with 3 students a step: its first steps land the step's own students higher than they were."""
    from nn_lesson.lesson.story.pages import lesson_pages
    try:
        record = train(LessonConfig(lr=5.0, batch_size=3, epochs=2))
    except Diverged as err:
        record = err.record
    return record, {p.title: p for p in lesson_pages(record)}


def test_overshot_is_said_exactly_where_the_steps_own_students_loss_went_up(runs, overshooting_run):
    """'This step overshot' on pages 05/07/09 exactly when the mean loss of the step's own students (worked out
    with a plain StudentNet) is higher after the step than before it; never for a straight-line guess that is
    merely far off (the default run's step 1 halves the loss on all training students)."""
    said, unsaid = set(), set()
    for name, (record, pages) in {**runs, "lr 5 batch 3": overshooting_run}.items():
        for k in range(min(3, len(record.log))):
            story = next(p.story for t, p in pages.items() if t.startswith(f"{5 + 2 * k:02d}"))
            samples = record.log[k].samples.long()
            before = each_students_loss(record, record.log[k].before)[samples].double().mean()
            after = each_students_loss(record, record.log[k].after)[samples].double().mean()
            rose = bool(torch.isfinite(after)) and float(after) > float(before)
            says = "**This step overshot**" in story
            assert says == rose, (name, k, float(before), float(after))
            (said if says else unsaid).add(name)
            if says:
                m = re.search(r"went up, ([^ ]+) → ([^;]+);", story)
                assert m and shown(m.group(2)) > shown(m.group(1)), story          # the numbers show the rise
    assert said and unsaid, (said, unsaid)
    default = runs["default"][1]["07 the network learns from Mike"].story
    assert "overshoot" not in default.lower()


def test_helped_hurt_and_no_change_are_read_from_the_sign_of_the_change():
    """The word beside a change: helped below 0, hurt above, no change at exactly 0 (never 'helped' for 0),
    not a number for NaN; and a change too small for 4 decimals prints in scientific notation, not as 0.0000."""
    from nn_lesson.lesson.story.numbers import signed_amount
    from nn_lesson.lesson.story.step_pages import change_word
    values = [-0.0477, -3.2e-6, 0.0, 3.2e-6, 0.2529, float("nan")]
    assert [change_word(torch.tensor(v)) for v in values] == [
        "helped", "helped", "no change", "hurt", "hurt", "not a number"]
    printed = [signed_amount(v) for v in values[:5]]
    assert printed == ["-0.0477", "-3.2×10⁻⁶", "0", "+3.2×10⁻⁶", "+0.2529"]
    assert [shown(p) for p in printed] == pytest.approx(values[:5], rel=0.02)


def test_step_200_prints_no_helped_or_hurt_beside_a_zero(written_run, tmp_path):
    """`nn-lesson --step 200`: the late steps change some losses by less than 0.00005; each such change prints
    with the digits that show it, and the word beside it follows its sign."""
    result = run_cli("--step", "200", "--snapshot", str(written_run[0]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^(\w+)(?: \(this step\))? +([\d.×⁻⁰-⁹]+) +([\d.×⁻⁰-⁹]+) +([-+]?[\d.×⁻⁰-⁹]+) +"
                      r"([-+]?[\d.×⁻⁰-⁹]+) +(helped|hurt|no change)$", result.stdout, re.M)
    assert len(rows) == 6, result.stdout
    small = 0
    for name, _, _, change, _, word in rows:
        value = shown(change)
        assert word == ("helped" if value < 0 else "hurt" if value > 0 else "no change"), (name, change, word)
        small += 0 < abs(value) < 5e-5
    assert small, "step 200 was chosen for its changes below 4 decimals"
    assert "-0.0000" not in result.stdout and "+0.0000" not in result.stdout


def test_minus_ln_and_the_loss_agree_at_the_precision_printed(runs):
    """Pages 04/06/08 (cross-entropy): '−ln(c) = L' with −ln of the printed c equal to the printed L within the
    digits shown; a confidence too small for 4 decimals in scientific notation (lr 5: 6.5×10⁻⁷, not 0.0000);
    L equal to the student's own loss from a plain StudentNet."""
    scientific_seen, plain_only = set(), set()
    for name, (record, pages) in runs.items():
        if record.config.loss != "ce":
            continue
        for k in range(min(3, len(record.log))):
            story = next(p.story for t, p in pages.items() if t.startswith(f"{4 + 2 * k:02d}"))
            sayings = re.findall(r"For (\w+) it is −ln\(confidence in the truth, (?:PASS|FAIL)\) = (?:−ln\(([^)]+)\) = )?"
                                 r"([^:]+):", story)
            assert len(sayings) == len(record.log[k].samples), (name, k)
            losses = each_students_loss(record, record.log[k].before)
            for (student, conf, loss), index in zip(sayings, record.log[k].samples.tolist()):
                assert "inf" not in loss and "0.0000" != conf, (name, k, student, conf, loss)
                if "not a number" in loss:
                    assert not math.isfinite(float(losses[index])), (name, k, student)
                    continue
                value = shown(loss)
                assert value == pytest.approx(float(losses[index]), rel=1e-3, abs=half_unit(loss) + 1e-6), (name, k, student)
                if conf:
                    c = shown(conf)
                    assert abs(-math.log(c) - value) <= half_unit(conf) / c + half_unit(loss) + 1e-9, (name, k, conf, loss)
                if "×10" in conf + loss:
                    scientific_seen.add(name)
                else:
                    plain_only.add(name)
    assert scientific_seen and plain_only, (scientific_seen, plain_only)


def test_huge_numbers_are_in_scientific_notation(runs):
    """No number on any page runs to more than 7 digits before its point: a diverging run's loss prints as
    1.373×10²⁹. Scientific notation appears on the runs that need it and not on the others."""
    needed, not_needed = set(), set()
    for name, (record, pages) in runs.items():
        text = "\n".join(p.story + "\n" + p.deep for p in pages.values())
        assert not re.search(r"\d{8,}\.\d", text), (name, re.search(r".{40}\d{8,}\.\d.{10}", text))
        (needed if re.search(r"×10[⁰¹²³⁴⁵⁶⁷⁸⁹]{2}", text) else not_needed).add(name)
    assert needed and not_needed, (needed, not_needed)


def test_the_story_layer_has_no_code_and_defines_its_terms(runs):
    """Code (`...`) only under the hood; 'error', 'typical difference' and the hoped-for pattern are explained
    where the story first uses them."""
    for name, (record, pages) in runs.items():
        for title, page in pages.items():
            assert "`" not in page.story, (name, title, re.findall(r"`[^`]+`", page.story))
            assert "backward()" not in page.story, (name, title)
        learns = pages["05 " + next(t[3:] for t in pages if t.startswith("05"))].story
        assert re.search(r"the \*\*error\*\* at (PASS|FAIL) \(how far its output is from the truth", learns), name
        recap = pages["11 what the network learned"].story
        if "per typical difference" in recap:
            assert recap.index("**typical difference**") < recap.index("| per typical difference"), name
        assert "hoped-for" not in recap and any(w in recap for w in ("We hoped that", "not learned", "no pattern to read")), name


def test_not_learned_at_exactly_the_commoner_share():
    """'Not learned yet' holds when the network gets exactly as many right as always answering the commoner
    result would, and not with one more right (made-up confidences on the default run's students)."""
    import dataclasses
    from nn_lesson.lesson.story.claims import not_trained
    record = train(LessonConfig(epochs=1))
    labels = record.training.labels
    majority = int(torch.bincount(labels, minlength=2).max())
    right_conf = torch.nn.functional.one_hot(labels, 2).float() * 0.8 + 0.1
    def with_right(n: int) -> RunRecord:
        conf = right_conf.clone()
        wrong = list(range(len(labels)))[n:]
        conf[wrong] = conf[wrong].flip(-1)
        answers = conf.argmax(-1)
        assert int((answers == labels).sum()) == n and not bool((answers == answers[0]).all())
        return dataclasses.replace(record, train=dataclasses.replace(record.train, confidence_final=conf))
    assert not_trained(with_right(majority)).holds
    assert not not_trained(with_right(majority + 1)).holds


def test_overshoots_when_the_loss_ends_above_its_start_without_a_jump():
    """The 'too high' claim (and the lab's 'overshoots') has two halves: a rise of more than 1.5× over an epoch,
    or an end above the start. A loss that creeps up by 1% an epoch has no jump and still overshoots."""
    import dataclasses
    from nn_lesson.lesson.story.claims import overshoot
    from nn_lesson.lesson.story.lab import verdict
    record = train(LessonConfig(epochs=5))
    start = float(record.train.loss_by_step[0])
    rows = len(record.train.loss_by_step)
    creeping = start * (1 + 0.05 * torch.arange(rows, dtype=torch.float64) / rows)
    falling = start * (1 - 0.5 * torch.arange(rows, dtype=torch.float64) / rows)
    def with_losses(losses: torch.Tensor) -> RunRecord:
        train_eval = dataclasses.replace(record.train, loss_by_step=losses.to(record.train.loss_by_step.dtype))
        return dataclasses.replace(record, train=train_eval)
    up, down = with_losses(creeping), with_losses(falling)
    assert overshoot(up).holds and not overshoot(down).holds
    assert "above its start" in overshoot(up).plain
    assert verdict(up, [up, down]) == "overshoots" and verdict(down, [up, down]) != "overshoots"
