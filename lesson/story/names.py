"""Readable names for the lesson network's numbers: which input, hidden unit and output a weight joins."""

from __future__ import annotations

INPUT_LABELS = ("studied", "slept", "score")
INPUT_UNITS = ("h", "h", "%")   # hours studied, hours slept, previous score in percent: as the CSV holds them
HIDDEN_LABELS = ("h1", "h2", "h3", "h4")
OUTPUT_LABELS = ("PASS", "FAIL")


def weight_name(param: str, index: tuple[int, ...]) -> str:
    """('hidden.weight', (2, 0)) -> 'studied→h3'; ('output.bias', (1,)) -> 'bias FAIL'."""
    layer, kind = param.rsplit(".", 1)
    sources, targets = (INPUT_LABELS, HIDDEN_LABELS) if layer == "hidden" else (HIDDEN_LABELS, OUTPUT_LABELS)
    if kind == "bias":
        return f"bias {targets[index[0]]}"
    return f"{sources[index[1]]}→{targets[index[0]]}"


def all_weight_names(param: str, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    """Every entry of a lesson parameter in storage order, with its readable name."""
    if len(shape) == 1:
        return [((i,), weight_name(param, (i,))) for i in range(shape[0])]
    return [((r, c), weight_name(param, (r, c))) for r in range(shape[0]) for c in range(shape[1])]
