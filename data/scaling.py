"""Standardisation with statistics from training rows only, kept to scale a new student the same way.

The seed lesson fed a score of 85 beside 8 hours into sigmoids; standardised inputs keep every
feature near 0 with spread 1, so no input saturates the hidden layer on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Standardizer:
    mean: torch.Tensor  # (features,)
    std: torch.Tensor   # (features,), population std; 1 where a column is constant

    @classmethod
    def fit(cls, features: torch.Tensor) -> "Standardizer":
        std = features.std(dim=0, correction=0)
        return cls(features.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    def inverse(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.std + self.mean
