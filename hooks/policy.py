"""How much a Recorder keeps: every number of every step, every k-th step, or statistics only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CapturePolicy:
    every: int = 1           # keep steps 0, k, 2k, ...
    stats_only: bool = False  # keep mean, std, norm, min, max and a histogram per tensor, not the tensor
    bins: int = 16           # histogram bins for stats_only

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")

    @classmethod
    def full(cls) -> "CapturePolicy":
        return cls()

    @classmethod
    def every_k(cls, k: int) -> "CapturePolicy":
        return cls(every=k)

    @classmethod
    def stats(cls, bins: int = 16, every: int = 1) -> "CapturePolicy":
        return cls(every=every, stats_only=True, bins=bins)
