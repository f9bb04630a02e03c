"""Everything the lesson writes to TensorBoard for one run: scalars and histograms (tensorboard_scalars),
the network diagram at every step, the 11 steps as text, the torchviz graph, add_graph, hparams and a
custom-scalars layout."""

from __future__ import annotations

import re
import sys

import torch
from torch.utils.tensorboard.summary import hparams

from lesson.autograd_graph import autograd_graph
from lesson.diagram import draw_network, png_bytes
from lesson.evaluate import epoch_summary
from lesson.numbers import num
from lesson.story import lesson_steps
from lesson.tb_events import EventWriter
from lesson.tensorboard_scalars import write_scalars
from lesson.view import LessonView

DIAGRAM_TAG = "diagram/network at this step"
# A diagram per step up to this many steps (the default lesson has 360); evenly spaced steps beyond.
MAX_DIAGRAMS = 400
GRAPH_TAG = "autograd/graph of step 0"
HPARAM_METRICS = {
    "hparams/final training loss": "train_loss", "hparams/final held-out loss": "heldout_loss",
    "hparams/final training accuracy": "train_accuracy", "hparams/final held-out accuracy": "heldout_accuracy",
}


def diagram_frames(view: LessonView):
    """row -> {tag: png}: the network as it was during that step (weights before it, its forward values)."""
    log = view.log
    before = {name: log.param(name, "before") for name in ("hidden.weight", "output.weight")}
    scale = max(float(w.abs().max()) for w in before.values())
    inputs, hidden = log.inputs[:, 0], log.activation("hidden_act")[:, 0]
    conf = view.confidences(log.outputs[:, 0])
    steps, epochs, losses = log.step.tolist(), log.epoch.tolist(), log.loss.tolist()
    samples = log.samples.tolist() if log.has("samples") else None

    def frame(row: int) -> dict[str, bytes]:
        who = " + ".join(view.names[i] for i in samples[row] if i >= 0) if samples else ""
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


def write_lesson_tensorboard(events: EventWriter, view: LessonView, final_model: torch.nn.Module) -> None:
    """Write the whole lesson into one run."""
    log = view.log
    frames = diagram_frames(view) if len(log) else None
    write_scalars(events, log, images=frames, image_steps=MAX_DIAGRAMS)
    writer = events.writer
    steps = lesson_steps(view)
    for title, markdown in steps:
        events.text(f"lesson/{title}", markdown)
    if len(log):
        graph = autograd_graph(view, 0)
        if graph.png is not None:
            events.step(0, images={GRAPH_TAG: graph.png})
        else:
            print(f"nn-lesson: warning: {graph.problem}", file=sys.stderr)
            events.text(f"{GRAPH_TAG} (DOT source)", "```\n" + graph.dot_source + "\n```")
    writer.add_graph(final_model, log.extras["train_inputs"][:1])
    writer.add_custom_scalars(custom_layout())
    _write_hparams(events, view)


def _write_hparams(events: EventWriter, view: LessonView) -> None:
    c = view.config
    hp = {"lr": c.lr, "loss": c.loss, "init": c.init, "epochs": c.epochs, "batch_size": c.batch_size,
          "activation": c.activation, "seed": c.seed}
    epochs = epoch_summary(view.log)
    metrics = {tag: float(epochs[key][-1]) for tag, key in HPARAM_METRICS.items() if key in epochs}
    for summary in hparams(hp, metrics):
        events.add(summary)
    last = int(view.log.step[-1]) if len(view.log) else 0
    events.step(last, scalars=metrics)
