"""A seeded generator of plausible students, for tests and for trying the lesson on a bigger class."""

from __future__ import annotations

import torch

from nn_lesson.data.students import StudentTable


def synthetic_students(n: int, seed: int = 0, heldout_fraction: float = 0.25) -> StudentTable:
    """Students whose PASS odds rise with study, sleep and previous score (a logistic rule plus noise)."""
    g = torch.Generator().manual_seed(seed)
    studied = torch.rand(n, generator=g) * 10
    slept = 4 + torch.rand(n, generator=g) * 5
    score = (40 + 6 * studied + torch.randn(n, generator=g) * 8).clamp(0, 100)
    logit = 0.9 * (studied - 5) + 0.4 * (slept - 6.5) + 0.08 * (score - 70)
    passed = torch.rand(n, generator=g) < torch.sigmoid(logit)
    features = torch.stack([studied, slept, score], dim=1).round(decimals=1)
    heldout = torch.rand(n, generator=g) < heldout_fraction
    heldout[0] = False  # at least one training student
    return StudentTable(
        tuple(f"student{i}" for i in range(n)), features, (~passed).long(), heldout, f"synthetic(n={n}, seed={seed})"
    )
