"""The CNN bridge run on disk: the model view (write_tensorboard: snapshots.npz, statistics.npz, the loss, the
health scalars and histograms by module path, an HParams row), so the Lesson tab opens it as the picture of the
model's health, plus what the bridge adds: accuracy per epoch, the held-out digits with the model's guesses, PR
curves, the projector, the pages of cnn_pages and bridge.json (the settings and accuracies).

write_tensorboard claims and publishes a run folder of its own; the bridge already holds the run's claim (--name,
--overwrite, numbered default names, torchrun ranks), so the model view is written into a scratch log directory
inside the claimed staging folder and its files moved in. A run killed meanwhile leaves only that staging folder,
which the next run removes (lesson/run/folder.py)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from nn_lesson.lesson.bridge.board import DIGITS_TAG, digit_grid
from nn_lesson.lesson.bridge.cnn_pages import compare_page, health_page, rule_page
from nn_lesson.lesson.bridge.pages import accuracy_page, loop_page, optimizer_page
from nn_lesson.lesson.bridge.train import BridgeRun

BRIDGE_FILE = "bridge.json"
SCRATCH = ".model-view"


def hparams(run: BridgeRun) -> dict[str, object]:
    c = run.config
    return {"model": "cnn", "batchnorm": c.batchnorm, "lr": c.learning_rate, "optimizer": c.optimizer,
            "epochs": c.epochs, "batch size": c.batch_size, "channels": c.channels, "blocks": c.blocks,
            "seed": c.seed, "capture": c.policy}


def pages(run: BridgeRun) -> list[tuple[str, str]]:
    return [loop_page(), rule_page(run), health_page(run), compare_page(run), optimizer_page(run), accuracy_page(run)]


def fill_cnn_run(folder: Path, run: BridgeRun, extra_pages: tuple = ()) -> None:
    """Write every file of the CNN run into `folder` (a claimed staging folder, published afterwards)."""
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.your_model import write_tensorboard
    scratch = folder / SCRATCH
    try:
        written = write_tensorboard(run.log, scratch / "logs" / "run", hparams(run), stats=run.stats)
        for entry in sorted(os.listdir(written)):
            if not entry.startswith("."):
                os.rename(written / entry, folder / entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (folder / BRIDGE_FILE).write_text(json.dumps({
        "kind": "bridge-cnn", "config": asdict(run.config), "stopped": run.stopped, "seconds": run.seconds,
        "heldout_accuracy_by_epoch": run.accuracy, "train_accuracy_by_epoch": run.train_accuracy,
        "epoch_end_steps": list(run.epoch_end_steps), "coverage": run.coverage}, indent=1))
    with EventWriter(folder) as events:
        write_cnn_extras(events, run, extra_pages)


def write_cnn_extras(events, run: BridgeRun, extra_pages: tuple = ()) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard.summary import pr_curve

    from nn_lesson.lesson.board.events import png_image
    for e, (train, held) in enumerate(zip(run.train_accuracy, run.accuracy)):
        events.step(e + 1, {"2 accuracy/epoch: training digits": train, "2 accuracy/epoch: held-out digits": held})
    x, y = run.heldout
    for step, predicted in zip(run.epoch_end_steps, run.predictions):
        events.add(Summary(value=[Summary.Value(tag=DIGITS_TAG, image=png_image(digit_grid(x, y, predicted)))]), step)
    if run.epoch_end_steps:
        for digit in range(10):
            events.add(pr_curve(f"pr curves/digit {digit}", (y == digit).numpy(),
                                run.probabilities[:, digit].numpy()), run.epoch_end_steps[-1])
        if run.hidden_start is not None and run.hidden_end is not None:
            events.embeddings([(run.hidden_start, 0), (run.hidden_end, run.epoch_end_steps[-1])],
                              [str(int(d)) for d in y], x.reshape(-1, 1, 8, 8), "pooled features on held-out digits")
    for title, markdown in (*pages(run), *extra_pages):
        events.text(title, markdown)
