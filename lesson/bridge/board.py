"""The bridge run in TensorBoard, in the lesson's tag layout where it applies, plus digit images with
the model's predictions and the pages of bridge_pages."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw

from nn_lesson.lesson.bridge.train import BridgeRun
from nn_lesson.lesson.bridge.pages import accuracy_page, loop_page, optimizer_page
from nn_lesson.lesson.board.events import EventWriter, png_image
from nn_lesson.lesson.board.hparams import column_values, write_hparams as write_hparams_row
from nn_lesson.lesson.board.scalars import write_log
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard.summary import pr_curve

DIGITS_TAG = "digits/held-out predictions"


def digit_grid(images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, n: int = 24) -> bytes:
    """8x8 digits enlarged, each captioned 'guess (truth)', wrong guesses in red."""
    cell, cols = 64, 8
    rows = -(-n // cols)
    grid = Image.new("RGB", (cols * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(min(n, len(images))):
        pixels = (255 - images[i].reshape(8, 8).numpy() * 255).clip(0, 255).astype(np.uint8)
        digit = Image.fromarray(pixels, "L").resize((cell - 8, cell - 8), Image.NEAREST)
        x, y = (i % cols) * cell, (i // cols) * (cell + 14)
        grid.paste(digit, (x + 4, y + 4))
        right = int(predicted[i]) == int(labels[i])
        draw.text((x + 6, y + cell - 4), f"{int(predicted[i])} ({int(labels[i])})",
                  fill=(20, 20, 20) if right else (220, 38, 38))
    out = io.BytesIO()
    grid.save(out, format="PNG")
    return out.getvalue()


def write_bridge_tensorboard(events: EventWriter, run: BridgeRun, pages: tuple = ()) -> None:
    """The bridge run; `pages`: more (title, markdown) pages, e.g. the Lightning comparison."""
    write_log(events, run.log)
    for e, (train, held) in enumerate(zip(run.train_accuracy, run.accuracy)):
        events.step(e + 1, {"2 accuracy/epoch: training digits": train, "2 accuracy/epoch: held-out digits": held})
    x, y = run.heldout
    for step, predicted in zip(run.epoch_end_steps, run.predictions):  # the guesses after every epoch
        events.add(Summary(value=[Summary.Value(tag=DIGITS_TAG, image=png_image(digit_grid(x, y, predicted)))]), step)
    for digit in range(10):  # precision against recall as the threshold on each digit's probability moves
        events.add(pr_curve(f"pr curves/digit {digit}", (y == digit).numpy(),
                            run.probabilities[:, digit].numpy()), run.epoch_end_steps[-1])
    images = x.reshape(-1, 1, 8, 8)
    labels = [str(int(d)) for d in y]
    events.embeddings([(run.hidden_start, 0), (run.hidden_end, run.epoch_end_steps[-1])], labels, images,
                      "hidden layer on held-out digits")
    write_hparams(events, run)
    for title, markdown in (loop_page(), optimizer_page(run), accuracy_page(run), *pages):
        events.text(title, markdown)
    events.graph(run.model, x[:1].to(next(run.model.parameters()).device))


def write_hparams(events: EventWriter, run: BridgeRun) -> None:
    """One row per bridge run in the HParams table it shares with lesson runs: the knobs and the accuracies."""
    c = run.config
    values = column_values("bridge", c.learning_rate, c.optimizer, "relu", "ce", c.batch_size, hidden=c.hidden,
                           epochs=c.epochs, init="random", seed=c.seed, capture=c.policy)
    metrics = {"hparams/final held-out accuracy": run.accuracy[-1],
               "hparams/final training accuracy": run.train_accuracy[-1]}
    write_hparams_row(events, values, metrics, run.epoch_end_steps[-1])
