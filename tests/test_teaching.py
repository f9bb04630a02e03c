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
from nn_lesson.lesson.run.settings import LessonConfig, build_model
from nn_lesson.lesson.run.train import Diverged, train
from nn_lesson.lesson.story.pages import lesson_steps
from nn_lesson.lesson.story.per_student import step_effect

MATRIX = {
    "default": {},
    "lr 0.001": {"lr": 0.001},
    "lr 5": {"lr": 5.0},
    "lr 50": {"lr": 50.0},
    "lr 1e30 relu": {"lr": 1e30, "activation": "relu"},
    "relu random seed 7": {"activation": "relu", "init": "random", "seed": 7},
    "tanh": {"activation": "tanh"},
    "mse": {"loss": "mse"},
    "batch 3": {"batch_size": 3},
}
CLAIMS = {  # the words that state each claim on page 01
    "diverged": "**Training diverged**", "overshoot": "**The learning rate is too high**",
    "not_trained": "**The network has not learned yet**", "saturated": "**The outputs are saturated**",
    "dead_units": "**Dead units**",
}


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[RunRecord, dict[str, str]]]:
    out = {}
    for name, settings in MATRIX.items():
        try:
            record = train(LessonConfig(**settings))
        except Diverged as err:
            record = err.record
        out[name] = (record, dict(lesson_steps(record)))
    return out


def trained_net(record: RunRecord) -> torch.nn.Module:
    net = build_model(record.config)
    net.load_state_dict(record.final())
    return net


def truths(record: RunRecord) -> dict[str, bool]:
    """Each claim's predicate, from the record's numbers and a plain forward pass."""
    final_finite = all(bool(torch.isfinite(t).all()) for t in record.final().values())
    if not final_finite or (record.stopped or "").startswith("diverged"):
        return {"diverged": True, "overshoot": False, "not_trained": False, "saturated": False, "dead_units": False}
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
    }


@pytest.mark.parametrize("name", list(MATRIX))
def test_page_01_states_exactly_the_claims_that_hold(runs, name):
    record, pages = runs[name]
    text = pages["01 the challenge"]
    for claim, holds in truths(record).items():
        assert (CLAIMS[claim] in text) == holds, (name, claim, holds)


def test_the_matrix_makes_every_claim_true_somewhere_and_false_somewhere(runs):
    seen = {claim: {truths(record)[claim] for record, _ in runs.values()} for claim in CLAIMS}
    assert all(values == {True, False} for values in seen.values()), seen


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_pattern_is_claimed_only_when_it_is_there(runs, name):
    record, pages = runs[name]
    text = pages["11 what the network learned"]
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
    appeared = "The hoped-for pattern appeared" in text
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
    assert f"It got **{right} of {len(conf)}** right" in pages["10 the final test"]


def test_a_student_with_nan_confidences_is_wrong():
    from nn_lesson.lesson.story.claims import correct
    conf = torch.tensor([[float("nan"), float("nan")], [0.9, 0.1], [float("nan"), 0.2]])
    assert correct(conf, torch.tensor([0, 0, 1])).tolist() == [False, True, False]


def test_the_start_is_compared_with_a_coin_flip(runs):
    for name, (record, pages) in runs.items():
        start = float(record.train.loss_by_step[0])
        worse = record.config.loss == "ce" and start > math.log(2)
        assert ("worse than the 0.6931 (ln 2) of a coin flip" in pages["03 the starting weights"]) == worse, name


def test_page_04_defines_the_loss_with_the_students_numbers(runs):
    record, pages = runs["default"]
    snap = record.log[0]
    conf = snap.outputs.softmax(1)[0]
    expected = f"−ln({float(conf[0]):.4f}) = {-math.log(float(conf[0])):.4f}"
    assert expected in pages["04 the network meets Sarah"]
    batch_record, batch_pages = runs["batch 3"]
    page = next(text for title, text in batch_pages.items() if title.startswith("04"))
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
    text = pages["05 the network learns from Sarah"]
    hurt = [n for i, n in enumerate(record.names) if float(effect.loss_after[i]) > float(effect.loss_before[i])]
    assert hurt and all(f"{n} |" in text or f"{n} (this step)" in text for n in hurt)
    assert "hurt " + ", ".join(hurt) in text


# ---- the chain rule page ----

def test_chain_rule_page_checks_by_finite_differences(runs):
    _, pages = runs["default"]
    text = pages["12 the chain rule by hand, step 0"]
    assert "float64" in text and "float32" in text and "Relative error" in text
    assert "the hand chain rule is right" in text


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


def test_the_learning_rate_lab_compares_runs_with_checked_verdicts(tmp_path, runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = run_cli("lab", "--lr", "0.001", "0.5", "5", "--logdir", str(tmp_path / "runs"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert folders == ["lab-comparison", "lab-lr0.001-ce-sigmoid", "lab-lr0.5-ce-sigmoid", "lab-lr5-ce-sigmoid"]
    acc = EventAccumulator(str(tmp_path / "runs/lab-comparison"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("lab/the learning-rate lab")[0].tensor_proto.string_val[0].decode()
    expected = {"0.001": "lr 0.001", "0.5": "default", "5": "lr 5"}
    for lr, name in expected.items():
        t = truths(runs[name][0])
        verdict = ("diverged" if t["diverged"] else "overshoots" if t["overshoot"] else
                   "too slow" if t["not_trained"] else "good")
        assert re.search(rf"^\| {re.escape(lr)} \|.*\| {verdict}[^|]* \|$", text, re.M), (lr, verdict)


def test_pages_keep_their_line_breaks_in_the_terminal(runs):
    """A diverged run's page 01 (it holds escaped user text) prints with its paragraphs, not U+FFFD."""
    from nn_lesson.lesson.story.terminal import page
    record, pages = runs["lr 1e30 relu"]
    printed = page("01 the challenge", pages["01 the challenge"])
    assert "\ufffd" not in printed and "\n\n" in printed
    assert "Training diverged at step 2" in printed
