"""Everything the lesson writes to TensorBoard for one run: scalars and histograms (tensorboard_scalars),
the network diagram at every step, the 11 pages as text (the story under `lesson/`, its depth under
`under the hood/`), the torchviz graph, add_graph, hparams and a
custom-scalars layout."""

from __future__ import annotations

import re
import sys

from torch.utils.tensorboard.summary import custom_scalars

from nn_lesson.lesson.board.autograd_graph import autograd_graph
from nn_lesson.lesson.board.decision_image import TAG as DECISION_TAG, decision_png
from nn_lesson.lesson.board.diagram import FIXED_SCALE, draw_network, png_bytes
from nn_lesson.lesson.board.events import EventWriter
from nn_lesson.lesson.board.hparams import column_values, write_hparams
from nn_lesson.lesson.board.scalars import write_scalars
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.decision_map import decision_grid
from nn_lesson.lesson.story.escape import md, terminal
from nn_lesson.lesson.story.names import all_weight_names
from nn_lesson.lesson.story.numbers import num
from nn_lesson.lesson.story.pages import lesson_pages

DIAGRAM_TAG = "0 the network/1 at this step"
# A diagram per step up to this many steps (the default lesson has 360); evenly spaced steps beyond.
MAX_DIAGRAMS = 400
GRAPH_TAG = "0 the network/2 its autograd graph (step 0)"
TABLE_TAG = "tables/the numbers of this step"
HPARAM_METRICS = {
    "hparams/final training loss": "train_loss", "hparams/final held-out loss": "heldout_loss",
    "hparams/final training accuracy": "train_accuracy", "hparams/final held-out accuracy": "heldout_accuracy",
}
EPOCH_TAGS = {
    "1 loss/epoch: mean of its steps": "step_loss_mean", "1 loss/epoch: all training students": "train_loss",
    "1 loss/epoch: held-out students": "heldout_loss", "2 accuracy/epoch: training students": "train_accuracy",
    "2 accuracy/epoch: held-out students": "heldout_accuracy",
}


def diagram_frames(record: RunRecord):
    """row -> {tag: png}: the network as it was during that step (weights before it, its forward values)."""
    log = record.log
    before = {name: log.param(name, "before") for name in ("hidden.weight", "output.weight")}
    inputs, hidden = log.inputs[:, 0], log.activation("hidden_act")[:, 0]
    conf = record.confidences(log.outputs[:, 0])
    steps, epochs, losses = log.step.tolist(), log.epoch.tolist(), log.loss.tolist()
    samples = log.samples.tolist() if log.has("samples") else None

    def frame(row: int) -> dict[str, bytes]:
        who = " + ".join(record.names[i] for i in samples[row] if i >= 0) if samples else ""
        title = f"step {steps[row]} · epoch {epochs[row] + 1} · {who} · loss {num(losses[row])}"
        weights = {name: w[row] for name, w in before.items()}
        return {DIAGRAM_TAG: png_bytes(draw_network(weights, inputs[row], hidden[row], conf[row], title, FIXED_SCALE))}
    return frame


def step_tables(record: RunRecord):
    """row -> {TABLE_TAG: markdown}: every weight and bias of the step (before, gradient, -lr x gradient,
    after) and the step's students, as tables; user text (names) escaped so a '|' stays in its cell."""
    log = record.log
    params = {name: {which: log.param(name, which) for which in ("before", "grad", "after")} for name in log.param_names}
    lr = log.lr.tolist() if log.has("lr") else [record.config.lr] * len(log)
    conf = record.confidences(log.outputs)
    batch, samples = log.batch_size.tolist(), log.samples.tolist() if log.has("samples") else None

    # Everything as Python lists once, and the labels escaped once: the tables are written for hundreds of steps.
    columns = [(md(label), [values[w][(slice(None), *idx)].tolist() for w in ("before", "grad", "after")])
               for name, values in params.items()
               for idx, label in all_weight_names(name, tuple(values["before"].shape[1:]))]
    step_numbers, epochs, losses = log.step.tolist(), log.epoch.tolist(), log.loss.tolist()
    conf_rows = conf.tolist()
    names = [md(n) for n in record.names]

    def tables(row: int) -> dict[str, str]:
        lines = [f"**Step {step_numbers[row]}** (epoch {epochs[row] + 1}), learning rate {lr[row]:g}, "
                 f"loss of its students {num(losses[row], 6)}", "",
                 "| student | PASS confidence | FAIL confidence |", "|---|---:|---:|"]
        for k in range(int(batch[row])):
            who = names[samples[row][k]] if samples and samples[row][k] >= 0 else f"#{k}"
            lines.append(f"| {who} | {conf_rows[row][k][0]:.4f} | {conf_rows[row][k][1]:.4f} |")
        lines += ["", "| weight | before | gradient | −lr × gradient | after |", "|---|---:|---:|---:|---:|"]
        for label, (b, g, a) in columns:
            lines.append(f"| {label} | {b[row]:+.5f} | {g[row]:+.5f} | {-lr[row] * g[row]:+.5f} | {a[row]:+.5f} |")
        return {TABLE_TAG: "\n".join(lines)}
    return tables


def custom_layout() -> dict:
    def rx(tag: str) -> str:
        return "^" + re.escape(tag) + "$"
    return {
        "Lesson": {
            "loss vs held-out loss (per epoch)": ["Multiline", [rx("1 loss/epoch: all training students"),
                                                               rx("1 loss/epoch: held-out students")]],
            "loss vs held-out loss (per step)": ["Multiline", [rx("1 loss/all training students"),
                                                              rx("1 loss/held-out students")]],
            "accuracy vs held-out accuracy (per epoch)": ["Multiline", [rx("2 accuracy/epoch: training students"),
                                                                       rx("2 accuracy/epoch: held-out students")]],
            "size of each parameter": ["Multiline", [r"^3 weights/.*"]],
            "size of each gradient": ["Multiline", [r"^4 gradients/.*"]],
            "size of each update": ["Multiline", [r"^5 updates/.*"]],
            "update-to-weight ratio": ["Multiline", [r"^6 health/.*"]],
        }
    }


def page_tag(title: str, group: str = "lesson") -> str:
    """A page's tag: its title as plain, inert text (a student's name may be in it), with no '/' that would
    start a new sidebar group. The story is under `lesson/`, the depth under `under the hood/`: two groups."""
    return f"{group}/" + terminal(title).replace("/", "\u2215")


DEEP_GROUP = "under the hood"


def evaluation_scalars(record: RunRecord) -> dict[str, object]:
    """Per recorded step: loss and accuracy on all training and held-out students after the step."""
    out = {}
    for ev, label in ((record.train, "all training students"), (record.heldout, "held-out students")):
        if ev is not None:
            out[f"1 loss/{label}"] = ev.loss_by_step[1:].numpy()
            out[f"2 accuracy/{label}"] = ev.accuracy_by_step[1:].numpy()
    return out


def epoch_scalars(record: RunRecord) -> dict[str, tuple]:
    epochs = record.epochs
    numbers = (epochs.epoch + 1).numpy()  # epochs are counted from 1 on the x axis
    return {tag: (numbers, getattr(epochs, key).numpy()) for tag, key in EPOCH_TAGS.items()
            if getattr(epochs, key) is not None}


def decision_rows(record: RunRecord) -> list[int]:
    """A few moments worth a decision map: the first step, the end of the first epoch, the middle, the end."""
    n = len(record.log)
    if n == 0:
        return []
    first_epoch_end = int((record.log.epoch == record.log.epoch[0]).sum()) - 1
    return sorted({0, first_epoch_end, n // 2, n - 1})


def write_lesson_tensorboard(events: EventWriter, record: RunRecord) -> None:
    """Write the whole lesson into one run."""
    log = record.log
    frames = diagram_frames(record) if len(log) else None
    write_scalars(events, log, row_scalars=evaluation_scalars(record), epoch_scalars=epoch_scalars(record),
                  images=frames, image_steps=MAX_DIAGRAMS, texts=step_tables(record) if len(log) else None)
    for page in lesson_pages(record):
        events.text(page_tag(page.title), page.story)
        if page.deep:
            events.text(page_tag(page.title, DEEP_GROUP), page.deep)
    if len(log):
        graph = autograd_graph(record, 0)
        if graph.png is not None:
            events.step(0, images={GRAPH_TAG: graph.png})
        else:
            print(f"nn-lesson: warning: {graph.problem}", file=sys.stderr)
            events.text(f"{GRAPH_TAG} (DOT source)", "```\n" + graph.dot_source + "\n```")
    for row in decision_rows(record):
        step = int(log.step[row])
        events.step(step, images={DECISION_TAG: decision_png(decision_grid(record, row), f"after step {step}")})
    events.add(custom_scalars(custom_layout()))
    _write_hparams(events, record)
    events.graph(record.trained_model(), record.scaler(record.training.features)[:1])


def _write_hparams(events: EventWriter, record: RunRecord) -> None:
    """This run's row in the HParams table that lesson and bridge runs share (lesson/board/hparams.py)."""
    c, epochs = record.config, record.epochs
    metrics = {tag: float(getattr(epochs, key)[-1]) for tag, key in HPARAM_METRICS.items()
               if getattr(epochs, key) is not None and len(getattr(epochs, key))}
    values = column_values("lesson", c.lr, "sgd", c.activation, c.loss, c.batch_size, hidden=4, epochs=c.epochs,
                           init=c.init, seed=c.seed, capture="full")
    write_hparams(events, values, metrics, int(record.log.step[-1]) if len(record.log) else 0)
