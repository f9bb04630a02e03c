"""Everything the lesson writes to TensorBoard for one run: scalars and histograms (tensorboard_scalars),
the network diagram at every step, the 11 steps as text, the torchviz graph, add_graph, hparams and a
custom-scalars layout."""

from __future__ import annotations

import re
import sys

from torch.utils.tensorboard.summary import custom_scalars, hparams

from nn_lesson.lesson.board.autograd_graph import autograd_graph
from nn_lesson.lesson.board.diagram import draw_network, png_bytes
from nn_lesson.lesson.board.events import EventWriter
from nn_lesson.lesson.board.scalars import write_scalars
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.escape import terminal
from nn_lesson.lesson.story.numbers import num
from nn_lesson.lesson.story.pages import lesson_steps

DIAGRAM_TAG = "diagram/network at this step"
# A diagram per step up to this many steps (the default lesson has 360); evenly spaced steps beyond.
MAX_DIAGRAMS = 400
GRAPH_TAG = "autograd/graph of step 0"
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
    scale = max(float(w.abs().max()) for w in before.values())
    inputs, hidden = log.inputs[:, 0], log.activation("hidden_act")[:, 0]
    conf = record.confidences(log.outputs[:, 0])
    steps, epochs, losses = log.step.tolist(), log.epoch.tolist(), log.loss.tolist()
    samples = log.samples.tolist() if log.has("samples") else None

    def frame(row: int) -> dict[str, bytes]:
        who = " + ".join(record.names[i] for i in samples[row] if i >= 0) if samples else ""
        title = f"step {steps[row]} · epoch {epochs[row] + 1} · {who} · loss {num(losses[row])}"
        weights = {name: w[row] for name, w in before.items()}
        return {DIAGRAM_TAG: png_bytes(draw_network(weights, inputs[row], hidden[row], conf[row], title, scale))}
    return frame


def custom_layout() -> dict:
    def rx(tag: str) -> str:
        return "^" + re.escape(tag) + "$"
    return {
        "Lesson": {
            "weights into PASS": ["Multiline", [r"^3 weights/.*→PASS$"]],
            "weights into FAIL": ["Multiline", [r"^3 weights/.*→FAIL$"]],
            **{f"weights into h{j}": ["Multiline", [rf"^3 weights/.*→h{j}$"]] for j in range(1, 5)},
            "loss vs held-out loss (per epoch)": ["Multiline", [rx("1 loss/epoch: all training students"),
                                                               rx("1 loss/epoch: held-out students")]],
            "loss vs held-out loss (per step)": ["Multiline", [rx("1 loss/all training students"),
                                                              rx("1 loss/held-out students")]],
            "update-to-weight ratio": ["Multiline", [r"^6 health/.*"]],
        }
    }


def page_tag(title: str) -> str:
    """A page's tag: its title as plain, inert text (a student's name may be in it), with no '/' that would
    start a new sidebar group."""
    return "lesson/" + terminal(title).replace("/", "\u2215")


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


def write_lesson_tensorboard(events: EventWriter, record: RunRecord) -> None:
    """Write the whole lesson into one run."""
    log = record.log
    frames = diagram_frames(record) if len(log) else None
    write_scalars(events, log, row_scalars=evaluation_scalars(record), epoch_scalars=epoch_scalars(record),
                  images=frames, image_steps=MAX_DIAGRAMS)
    for title, markdown in lesson_steps(record):
        events.text(page_tag(title), markdown)
    if len(log):
        graph = autograd_graph(record, 0)
        if graph.png is not None:
            events.step(0, images={GRAPH_TAG: graph.png})
        else:
            print(f"nn-lesson: warning: {graph.problem}", file=sys.stderr)
            events.text(f"{GRAPH_TAG} (DOT source)", "```\n" + graph.dot_source + "\n```")
    events.add(custom_scalars(custom_layout()))
    _write_hparams(events, record)
    events.graph(record.trained_model(), record.scaler(record.training.features)[:1])


def _write_hparams(events: EventWriter, record: RunRecord) -> None:
    c = record.config
    hp = {"lr": c.lr, "loss": c.loss, "init": c.init, "epochs": c.epochs, "batch_size": c.batch_size,
          "activation": c.activation, "seed": c.seed}
    epochs = record.epochs
    metrics = {tag: float(getattr(epochs, key)[-1]) for tag, key in HPARAM_METRICS.items()
               if getattr(epochs, key) is not None and len(getattr(epochs, key))}
    for summary in hparams(hp, metrics):
        events.add(summary)
    last = int(record.log.step[-1]) if len(record.log) else 0
    events.step(last, scalars=metrics)
