"""How many intra-op threads torch should use for a model: one for small ones.

A small model's operations are too short to split across threads, and when another busy process holds a
core, torch's threads wait on each other: the bridge MLP's training ran 4-23 s under contention against
0.4 s quiet with 2 threads, and 0.4-0.6 s with 1 (2 cores, torch 2.13 CPU).

    torch.set_num_threads(threads_for(model))      # 1 below SMALL_MODEL parameters, else torch's default
"""

from __future__ import annotations

import torch
from torch import nn

# Below this many parameters one thread is as fast quiet and much faster under contention (a step of a
# 17k-parameter MLP at batch 64 is ~300 µs: too short to split).
SMALL_MODEL = 1_000_000


def parameter_count(model: nn.Module | int) -> int:
    return model if isinstance(model, int) else sum(p.numel() for p in model.parameters())


def threads_for(model: nn.Module | int, requested: int | None = None) -> int:
    """Intra-op threads for `model` (or a parameter count): `requested` when given, 1 for a model under
    SMALL_MODEL parameters, else torch's current setting."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return requested
    return 1 if parameter_count(model) < SMALL_MODEL else torch.get_num_threads()


def use_threads(model: nn.Module | int, requested: int | None = None) -> int:
    """Set torch's intra-op threads for `model` (see threads_for) and return the number set."""
    n = threads_for(model, requested)
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n
