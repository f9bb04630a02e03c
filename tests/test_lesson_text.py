"""Every number in the generated steps comes from the snapshot file: parse the text, find the number."""

import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nn_lesson.lesson.board.lesson_run import page_tag
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.run.settings import build_loss, build_model
from nn_lesson.lesson.story.pages import lesson_pages


@pytest.fixture(scope="module")
def saved(written_run):
    run_dir, stdout = written_run
    record = RunRecord.load(run_dir / "snapshots.npz")
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    pages = {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in acc.Tags()["tensors"]
             if t.startswith(("lesson/", "under the hood/"))}
    return record, pages, stdout


def page(pages, prefix, group="lesson"):
    return next(text for tag, text in pages.items() if tag.startswith(f"{group}/{prefix}"))


def test_sarahs_confidence_is_the_softmax_in_the_file(saved):
    log, pages, _ = saved[0].log, saved[1], saved[2]
    text = page(pages, "04")
    row = re.search(r"\| Sarah \| ([\d.]+)% \| ([\d.]+)% \| (PASS|FAIL) \| (PASS|FAIL) \| (right|wrong) \|", text)
    conf = log[0].outputs.softmax(1)[0]
    assert float(row.group(1)) == pytest.approx(100 * float(conf[0]), abs=0.05)
    assert float(row.group(2)) == pytest.approx(100 * float(conf[1]), abs=0.05)
    assert (row.group(5) == "right") == (int(conf.argmax()) == int(log[0].targets[0]))


def test_worked_update_uses_the_real_weight_gradient_and_lr(saved):
    log, pages, _ = saved[0].log, saved[1], saved[2]
    text = page(pages, "05")
    m = re.search(r"For \*\*(h\d)→(PASS|FAIL)\*\*: gradient = .* = \*\*([+-][\d.]+)\*\*", text)
    j, o = int(m.group(1)[1]) - 1, ("PASS", "FAIL").index(m.group(2))
    u = re.search(r"= ([+-][\d.]+) − ([\d.]+) × ([+-][\d.]+) = \*\*([+-][\d.]+)\*\*", text)
    old, lr, grad, new = (float(g) for g in u.groups())
    snap = log[0]
    assert grad == pytest.approx(float(snap.grads["output.weight"][o, j]), abs=5e-5) == float(m.group(3))
    assert old == pytest.approx(float(snap.before["output.weight"][o, j]), abs=5e-5)
    assert new == pytest.approx(float(snap.after["output.weight"][o, j]), abs=5e-5)
    assert lr == snap.lr
    assert new == pytest.approx(old - lr * grad, abs=2e-4)  # the arithmetic a learner can redo


def test_heldout_predictions_are_in_the_file(saved):
    record, pages, _ = saved
    text = page(pages, "10")
    names = record.heldout_names
    conf = record.heldout.confidence_final
    assert len(names) == 4
    story, deep = text, page(pages, "10", "under the hood")
    for i, name in enumerate(names):
        # the story: PASS confidence, guess, truth (seven columns fit beside the network); the depth adds FAIL
        m = re.search(rf"^\| {name} \|[^\n]*?\| ([\d.]+)% \| (PASS|FAIL) \| (PASS|FAIL) \| (right|wrong) \|$", story, re.M)
        assert m, story
        assert float(m.group(1)) == pytest.approx(100 * float(conf[i, 0]), abs=0.05)
        assert m.group(2) == ("PASS", "FAIL")[int(conf[i].argmax())]
        assert m.group(3) == ("PASS", "FAIL")[int(record.held_out.labels[i])]
        m = re.search(rf"^\| {name} \|[^\n]*?\| ([\d.]+)% \| ([\d.]+)% \| (PASS|FAIL) \| (PASS|FAIL) \|", deep, re.M)
        assert m, deep
        assert float(m.group(2)) == pytest.approx(100 * float(conf[i, 1]), abs=0.05)


def step_zero_in_float64(record):
    """A plain StudentNet in float64 with step 0's weights before it, and step 0's loss on its students."""
    snap = record.log[0]
    net = build_model(record.config).double()
    net.load_state_dict({n: t.double() for n, t in snap.before.items()})
    targets = snap.targets if record.config.loss == "ce" else snap.targets.double()
    return net, lambda: build_loss(record.config)(net(snap.inputs.double()), targets)


def test_chain_rule_page_agrees_with_backward(saved):
    """Every parameter's gradient printed on page 05's depth, 'by hand', against backward() run here in float64;
    the 'autograd' column against the gradient in the snapshot file."""
    record, pages, _ = saved
    net, loss = step_zero_in_float64(record)
    loss().backward()
    own = {name: p.grad for name, p in net.named_parameters()}
    from nn_lesson.lesson.story.names import all_weight_names
    rows = {r[0]: (float(r[1]), float(r[2])) for r in
            re.findall(r"^\| ([^|]+?) \| ([+-][\d.]+e[+-]\d+) \| ([+-][\d.]+e[+-]\d+) \| [\d.e+-]+ \|$",
                       page(pages, "05", "under the hood"), re.M)}
    checked = 0
    for name, grad in own.items():
        for idx, label in all_weight_names(name, tuple(grad.shape)):
            hand, autograd = rows[label]
            assert hand == pytest.approx(float(grad[idx]), rel=1e-7, abs=1e-12), label
            assert autograd == pytest.approx(float(record.log[0].grads[name][idx]), rel=1e-7, abs=1e-12), label
            checked += 1
    assert checked == 26


def test_chain_rule_page_checks_by_finite_differences(saved):
    """The centred difference and the hand value printed for studied→h1, against a centred difference and a
    backward() worked out here in float64, not against the page's own verdict."""
    record, pages, _ = saved
    text = page(pages, "05", "under the hood")
    m = re.search(r"±ε = ([\d.e+-]+) .*?/ 2ε = ([+-][\d.]+), against ([+-][\d.]+) by hand", text)
    eps, shown_fd, shown_hand = float(m.group(1)), float(m.group(2)), float(m.group(3))
    net, loss = step_zero_in_float64(record)
    w = net.hidden.weight
    with torch.no_grad():
        w[0, 0] += eps
        up = float(loss())
        w[0, 0] -= 2 * eps
        down = float(loss())
        w[0, 0] += eps
    fd = (up - down) / (2 * eps)
    loss().backward()
    # 12 decimals: tight enough that the hand value written in place of the difference (they differ by ~3e-11) fails
    assert shown_fd == pytest.approx(fd, abs=2e-12)
    assert shown_hand == pytest.approx(float(w.grad[0, 0]), abs=2e-12)
    assert fd == pytest.approx(float(w.grad[0, 0]), rel=1e-6)   # the check itself holds


def test_terminal_prints_the_same_numbers(saved):
    _, pages, stdout = saved
    for prefix in ("04", "05", "10"):
        for number in re.findall(r"[+-]?\d+\.\d{4}", page(pages, prefix)):
            assert number in stdout


def test_steps_regenerate_identically_from_the_loaded_file(saved):
    record, pages, _ = saved
    again = lesson_pages(record)
    assert [p.title[:2] for p in again] == [f"{k:02d}" for k in range(1, 12)]
    tags = {page_tag(p.title): p.story for p in again}
    tags.update({page_tag(p.title, "under the hood"): p.deep for p in again if p.deep})
    assert set(tags) == set(pages)
    for tag, text in tags.items():
        assert pages[tag] == text


def test_what_it_learned_says_when_a_pattern_is_missing():
    """A network whose weights make more study lower the PASS confidence must say so."""
    from nn_lesson.lesson.run.settings import LessonConfig
    from nn_lesson.lesson.story.pages import what_it_learned
    from nn_lesson.lesson.run.train import train
    record = train(LessonConfig(epochs=1))
    log = record.log
    with torch.no_grad():  # flip the study input's effect in the final weights
        for name in ("param_after",):
            col = log.columns[name].values(len(log))
            slot = log.slot("hidden.weight")
            w = col[-1, slot.offset: slot.offset + 12].view(4, 3)
            w[:, 0] = -5 * w[:, 0].sign() * log[-1].after["output.weight"][0].sign()
    text = what_it_learned(record).story
    assert "Not all did:" in text and "more study did **not** raise" in text
