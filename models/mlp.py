"""A plain MLP as nn.Sequential: the shape of model people train for real, for the bridge lessons."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from nn_lesson.models.student_net import ACTIVATIONS


def make_mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu") -> nn.Sequential:
    """make_mlp([64, 32, 10]) -> hidden: Linear(64,32), relu: ReLU, output: Linear(32,10); no activation after
    the last layer. Layers are named, not numbered, so a recorded log reads `hidden.weight`, `output` (with more
    hidden layers: hidden1, relu1, hidden2, relu2, ..., output)."""
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"sizes must be at least two positive layer widths, got {list(sizes)}")
    hidden = len(sizes) - 2
    layers: list[tuple[str, nn.Module]] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == hidden:
            layers.append(("output", nn.Linear(fan_in, fan_out)))
            break
        number = "" if hidden == 1 else str(i + 1)
        layers.append((f"hidden{number}", nn.Linear(fan_in, fan_out)))
        layers.append((f"{activation}{number}", ACTIVATIONS[activation]()))
    return nn.Sequential(OrderedDict(layers))
