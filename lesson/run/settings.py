"""The settings of one lesson run, and how each becomes a torch object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nn_lesson.models import ACTIVATIONS, StudentNet

LOSSES = ("ce", "mse")
INITS = ("lesson", "random")
# The lesson records every number of every step and evaluates every student after each: past this many steps
# a run stops being a lesson and its record stops being small (about 1 kB a step with the lesson's students).
MAX_STEPS = 200_000


def steps_of(epochs: int, batch_size: int, students: int) -> int:
    """Optimizer steps of a run: one per batch, every epoch (the last batch of an epoch may be short)."""
    return epochs * -(-students // batch_size)


def check_steps(epochs: int, batch_size: int, students: int) -> str | None:
    """Why this run is too long to record, or None."""
    steps = steps_of(epochs, batch_size, students)
    if steps <= MAX_STEPS:
        return None
    return (f"{epochs:,} epochs of {students} students in batches of {batch_size} are {steps:,} steps; a lesson run "
            f"records at most {MAX_STEPS:,} (fewer --epochs, or `nn-lesson bridge` for long training)")


@dataclass(frozen=True)
class LessonConfig:
    lr: float = 0.5
    epochs: int = 60
    batch_size: int = 1
    seed: int = 0
    init: str = "lesson"          # lesson: the seed's starting weights; random: seeded PyTorch init
    activation: str = "sigmoid"   # hidden layer: sigmoid | tanh | relu
    loss: str = "ce"              # ce: cross-entropy on 2 logits; mse: the seed's two sigmoids + MSE
    shuffle: bool = False         # False: students in the CSV's order every epoch, as in the lesson

    def __post_init__(self):
        problems = []
        if not (self.lr > 0 and self.lr < float("inf")):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if self.init not in INITS:
            problems.append(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_name(self) -> str:
        """A readable run name from the settings that tell runs apart: lr0.5-ce-sigmoid, and -b3, -random7,
        -shuffled when the batch size, the starting weights or the order differ from the lesson's."""
        name = f"lr{self.lr:g}-{self.loss}-{self.activation}"
        if self.batch_size != 1:
            name += f"-b{self.batch_size}"
        if self.init == "random":
            name += f"-random{self.seed}"
        return name + ("-shuffled" if self.shuffle else "")


def build_model(config: LessonConfig) -> StudentNet:
    sigmoid_outputs = config.loss == "mse"
    if config.init == "lesson":
        return StudentNet.from_lesson(config.activation, sigmoid_outputs)
    return StudentNet.from_seed(config.seed, config.activation, sigmoid_outputs)


def build_loss(config: LessonConfig) -> nn.Module:
    return nn.CrossEntropyLoss() if config.loss == "ce" else nn.MSELoss()


def loss_targets(config: LessonConfig, labels: torch.Tensor) -> torch.Tensor:
    """CE takes class indices; the seed's MSE wants one target per output (1 for the right one, 0 else)."""
    return labels if config.loss == "ce" else nn.functional.one_hot(labels, 2).to(torch.float32)


def confidences(config: LessonConfig, outputs: torch.Tensor) -> torch.Tensor:
    """PASS/FAIL confidence in 0..1: softmax of the logits (ce) or the two sigmoid outputs as they are (mse)."""
    return outputs.softmax(-1) if config.loss == "ce" else outputs
