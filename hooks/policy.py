"""How much a Recorder keeps: every number of every step, every k-th step, statistics only, or statistics of
every step together with every number of every k-th step."""

from __future__ import annotations

from dataclasses import dataclass


def ordinal(k: int) -> str:
    """2 -> '2nd', 11 -> '11th', 64 -> '64th'."""
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


@dataclass(frozen=True)
class CapturePolicy:
    every: int = 1           # keep steps 0, k, 2k, ...
    stats_only: bool = False  # keep mean, std, norm, min, max and a histogram per tensor, not the tensor
    bins: int = 16           # histogram bins for the statistics
    stats_every_step: bool = False  # with every > 1: also statistics of every step (Recorder.stats_log)

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.bins < 1:
            raise ValueError(f"bins must be >= 1, got {self.bins}")
        if self.stats_every_step and self.stats_only:
            raise ValueError("stats_every_step adds statistics to full rows; with stats_only every row is statistics")

    @classmethod
    def full(cls) -> "CapturePolicy":
        return cls()

    @classmethod
    def every_k(cls, k: int) -> "CapturePolicy":
        return cls(every=k)

    @classmethod
    def stats(cls, bins: int = 16, every: int = 1) -> "CapturePolicy":
        return cls(every=every, stats_only=True, bins=bins)

    @classmethod
    def stats_and_every(cls, k: int, bins: int = 16) -> "CapturePolicy":
        """Statistics of every step (rec.stats_log) and every number of steps 0, k, 2k, ... (rec.log)."""
        return cls(every=k, bins=bins, stats_every_step=True)

    def describe(self) -> str:
        if self.stats_only:
            return "statistics of every step" if self.every == 1 else f"statistics of every {ordinal(self.every)} step"
        full = "every number of every step" if self.every == 1 else f"every number of every {ordinal(self.every)} step"
        return ("statistics of every step and " + full) if self.stats_every_step else full
