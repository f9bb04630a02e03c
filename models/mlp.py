"""A plain MLP as nn.Sequential: the shape of model people train for real, for the bridge lessons."""

from __future__ import annotations

from torch import nn

from nn_lesson.models.student_net import ACTIVATIONS


def make_mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu") -> nn.Sequential:
    """make_mlp([64, 32, 10]) -> Linear(64,32), ReLU, Linear(32,10); no activation after the last layer."""
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"sizes must be at least two positive layer widths, got {list(sizes)}")
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
