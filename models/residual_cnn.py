"""A small residual CNN (ResNet-like) for 1x8x8 images: the second bridge's network. Imports torch only.

    stem      Conv2d(1, C, 3, padding 1) -> BatchNorm2d -> ReLU          C x 8 x 8
    layers.i  a residual block: conv1 -> bn1 -> relu1 -> conv2 -> bn2, plus the block's input, -> relu
    head      AdaptiveAvgPool2d(1) -> Flatten -> Linear(C, classes)

Every layer is its own named module (no in-place ops, no `out += identity`), so a Recorder's log reads
`stem.conv.weight`, `layers.1.bn2`, `head.fc` and the Lesson tab groups the blocks by parent. With
`batchnorm=False` the BatchNorm layers are left out and the convolutions get biases: the same net, unnormalised.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, batchnorm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm)
        self.bn1 = nn.BatchNorm2d(channels) if batchnorm else None
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batchnorm)
        self.bn2 = nn.BatchNorm2d(channels) if batchnorm else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
        out = self.conv2(self.relu1(out))
        if self.bn2 is not None:
            out = self.bn2(out)
        return self.relu(out + x)


class ResidualCNN(nn.Module):
    """ResidualCNN(channels=16, blocks=2, batchnorm=True): 1x8x8 images -> `classes` scores."""

    def __init__(self, channels: int = 16, blocks: int = 2, batchnorm: bool = True, classes: int = 10):
        super().__init__()
        if channels < 1 or blocks < 0 or classes < 1:
            raise ValueError(f"channels and classes must be positive and blocks >= 0, got {channels}, {blocks}, {classes}")
        self.batchnorm = batchnorm
        stem = [("conv", nn.Conv2d(1, channels, 3, padding=1, bias=not batchnorm))]
        if batchnorm:
            stem.append(("bn", nn.BatchNorm2d(channels)))
        stem.append(("relu", nn.ReLU()))
        self.stem = nn.Sequential(OrderedDict(stem))
        self.layers = nn.Sequential(*(ResidualBlock(channels, batchnorm) for _ in range(blocks)))
        self.head = nn.Sequential(OrderedDict([("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                                              ("fc", nn.Linear(channels, classes))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flat 64-pixel rows, as the MLP takes them
            x = x.reshape(-1, 1, 8, 8)
        return self.head(self.layers(self.stem(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The C numbers per image the head's linear layer reads (after pooling)."""
        if x.dim() == 2:
            x = x.reshape(-1, 1, 8, 8)
        return self.head.flatten(self.head.pool(self.layers(self.stem(x))))
