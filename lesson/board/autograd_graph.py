"""torchviz's picture of the autograd graph behind one real recorded step.

The step is replayed from the snapshot (its weights before, its inputs and targets) so the graph is the
one `loss.backward()` walked. PNG needs Graphviz's `dot`; without it the DOT source is returned instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import graphviz
import torch
from torchviz import make_dot

from nn_lesson.lesson.run.settings import build_loss
from nn_lesson.lesson.run.record import RunRecord


@dataclass
class AutogradGraph:
    dot_source: str
    png: bytes | None      # None when Graphviz's dot is missing
    problem: str | None    # why there is no PNG


def autograd_graph(record: RunRecord, step: int = 0) -> AutogradGraph:
    snap = record.log[step]
    params = {name: t.clone().requires_grad_(True) for name, t in snap.before.items()}
    out = torch.func.functional_call(record.model, params, (snap.inputs,))
    loss = build_loss(record.config)(out, snap.targets)
    dot = make_dot(loss, params=params)
    dot.graph_attr.update(label=f"autograd graph of step {step}: loss {float(loss.detach()):.4f}", labelloc="t")
    try:
        return AutogradGraph(dot.source, dot.pipe(format="png"), None)
    except graphviz.ExecutableNotFound:
        return AutogradGraph(dot.source, None, "Graphviz's `dot` was not found (apt-get install graphviz); "
                             "the autograd graph is written as DOT text instead of an image")
