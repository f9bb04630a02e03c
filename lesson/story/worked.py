"""The weight a "learns from" page works through by hand: the output weight with the largest gradient of the
step. One rule, read by the page (its worked example) and by the Lesson tab (which marks that line)."""

from __future__ import annotations

WORKED_PARAM = "output.weight"


def worked_weight(snap) -> tuple[str, int, int]:
    """(parameter, row, column) of the step's worked weight: the output weight with the largest |gradient|."""
    grad = snap.grads[WORKED_PARAM]
    row, column = divmod(int(grad.abs().argmax()), grad.shape[1])
    return WORKED_PARAM, row, column
