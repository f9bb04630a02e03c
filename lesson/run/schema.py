"""What a lesson run's snapshot file must hold before anything reads it: every column and record member the
pages, the terminal and the Lesson tab use, checked for presence, kind of number, shape and agreement with each
other (labels in range, one name per student, the feature width, one row per step).

The file layer (hooks/snapshot_file.py) has already checked the framing: the zip, the .npy headers against the
zip directory, plain native-endian numbers, every column's first dimension against the header's step count.
This layer knows what a lesson is. Any violation is one SnapshotFileError line naming the file and the member.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nn_lesson.data import CLASSES, FEATURES
from nn_lesson.hooks import SnapshotFileError
from nn_lesson.lesson.run.settings import LessonConfig

# The kinds of number a lesson run holds, by the dtype torch computes with: the network is float32, so a float16
# or float64 member would meet float32 weights in a matrix product; counters and labels are int64.
FLOAT, INT, WIDE = "float32", "int64", "float64"
KINDS = {torch.float32: FLOAT, torch.int64: INT, torch.float64: WIDE, torch.bool: "bool"}
N_IN, N_OUT = len(FEATURES), len(CLASSES)


def _kind(t: torch.Tensor) -> str:
    return KINDS.get(t.dtype, str(t.dtype).removeprefix("torch."))


def check_lesson_record(path: str | Path, log, header: dict[str, Any], members: dict[str, torch.Tensor]) -> None:
    """Refuse (SnapshotFileError) a lesson run whose contents contradict the format."""
    def bad(what: str) -> SnapshotFileError:
        return SnapshotFileError(f"{path}: lesson run record: {what}")

    def member(name: str, kind: str | tuple[str, ...], shape: tuple) -> torch.Tensor:
        """A record member of this kind of number and shape (None in `shape`: any size there)."""
        if name not in members:
            raise bad(f"member {name!r} is missing")
        t = members[name]
        kinds = (kind,) if isinstance(kind, str) else kind
        if _kind(t) not in kinds:
            raise bad(f"member {name!r} holds {_kind(t)} values, expected {' or '.join(kinds)}")
        if len(shape) != t.dim() or any(want is not None and want != got for want, got in zip(shape, t.shape)):
            raise bad(f"member {name!r} has shape {tuple(t.shape)}, expected {_shape(shape)}")
        return t

    names = header.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad("'names' must be a list of student names")
    data = header.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("sha256"), str):
        raise bad("'data' must name the data file and its sha256")
    _check_config(bad, header.get("config"))
    if header.get("stopped") is not None and not isinstance(header.get("stopped"), str):
        raise bad("'stopped' must be a reason or null")
    n = len(names)
    features = member("features", FLOAT, (n, N_IN))   # one name per student, three features each
    labels = member("labels", INT, (n,))
    heldout = member("heldout", ("bool", INT), (n,))
    if n and not bool(((labels >= 0) & (labels < N_OUT)).all()):
        raise bad(f"labels must be 0 (PASS) or 1 (FAIL); found {int(labels.min())}..{int(labels.max())}")
    if not bool(torch.isfinite(features).all()):
        raise bad("features must be finite numbers")
    if heldout.dtype != torch.bool and not bool(((heldout == 0) | (heldout == 1)).all()):
        raise bad("heldout must be true/false for every student")
    held = heldout.to(torch.bool)
    n_train, n_held = int((~held).sum()), int(held.sum())
    if n_train == 0:
        raise bad("no training students")
    member("scaler_mean", FLOAT, (N_IN,))
    std = member("scaler_std", FLOAT, (N_IN,))
    if not bool((std > 0).all()):
        raise bad("scaler_std must be positive")

    shapes = {p.name: p.shape for p in log.params}
    expected = {"hidden.weight": (None, N_IN), "hidden.bias": (None,), "output.weight": (N_OUT, None),
                "output.bias": (N_OUT,)}
    if set(shapes) != set(expected) or any(not _fits(shapes[k], v) for k, v in expected.items()):
        raise bad(f"parameters {shapes} are not the lesson network's (3 inputs → hidden → 2 outputs)")
    hidden = shapes["hidden.weight"][0]
    if shapes["hidden.bias"] != (hidden,) or shapes["output.weight"][1] != hidden:
        raise bad(f"parameters {shapes} do not agree on the hidden layer's size")
    for name, shape in shapes.items():
        member(f"initial:{name}", FLOAT, shape)

    steps = log.steps
    for split, count, needed in (("train", n_train, True), ("heldout", n_held, n_held > 0)):
        if not needed and f"{split}_loss_by_step" not in members:
            continue
        member(f"{split}_loss_by_step", FLOAT, (steps + 1,))
        member(f"{split}_accuracy_by_step", FLOAT, (steps + 1,))
        member(f"{split}_confidence_start", FLOAT, (count, N_OUT))
        member(f"{split}_confidence_final", FLOAT, (count, N_OUT))
    check_lesson_columns(path, log, n_train, hidden)


def check_lesson_columns(path: str | Path, log, n_train: int, hidden: int) -> None:
    """The log's columns that the lesson reads, one row per step."""
    def bad(what: str) -> SnapshotFileError:
        return SnapshotFileError(f"{path}: lesson run log: {what}")
    if log.steps == 0:
        return
    columns = log.columns
    width = sum(p.numel for p in log.params)

    def column(name: str, kind: str | tuple[str, ...], row_shape: tuple) -> torch.Tensor:
        if name not in columns:
            raise bad(f"column {name!r} is missing")
        t = log.values(name)
        kinds = (kind,) if isinstance(kind, str) else kind
        if _kind(t) not in kinds:
            raise bad(f"column {name!r} holds {_kind(t)} values, expected {' or '.join(kinds)}")
        if t.dim() != 1 + len(row_shape) or not _fits(tuple(t.shape[1:]), row_shape):
            raise bad(f"column {name!r} rows have shape {tuple(t.shape[1:])}, expected {_shape(row_shape)}")
        return t

    for name in ("step", "epoch"):
        column(name, INT, ())
    column("loss", FLOAT, ())
    if "lr" in columns:
        column("lr", (WIDE, FLOAT), ())
    inputs = column("inputs", FLOAT, (None, N_IN))
    batch = inputs.shape[1]
    column("outputs", FLOAT, (batch, N_OUT))
    if "targets" not in columns:
        raise bad("column 'targets' is missing")
    targets = column("targets", (INT, FLOAT), (batch,) if log.values("targets").dim() == 2 else (batch, N_OUT))
    if _kind(targets) == INT and not bool(((targets >= 0) & (targets < N_OUT)).all()):
        raise bad("targets must be 0 (PASS) or 1 (FAIL)")
    samples = column("samples", INT, (batch,))
    if not bool(((samples >= -1) & (samples < n_train)).all()):
        raise bad(f"samples must name training students 0..{n_train - 1} (or -1 for none)")
    sizes = column("batch_size", INT, ())
    if not bool(((sizes >= 1) & (sizes <= batch)).all()):
        raise bad(f"batch_size must be 1..{batch}")
    for name in ("param_before", "param_grad", "param_after"):
        column(name, FLOAT, (width,))
    column("act:hidden_act", FLOAT, (batch, hidden))
    column("act_grad:output", FLOAT, (batch, N_OUT))


def _check_config(bad, config) -> None:
    """The settings: exactly LessonConfig's fields, each of its type (a whole number may stand for a float)."""
    if not isinstance(config, dict):
        raise bad("'config' must be an object of settings")
    defaults = {f.name: getattr(LessonConfig(), f.name) for f in fields(LessonConfig)}
    for key, value in config.items():
        if key not in defaults:
            raise bad(f"unknown setting {key[:40]!r} in 'config'")
        want = type(defaults[key])
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise bad(f"setting {key!r} must be a {want.__name__}, not {str(value)[:40]!r}")


def _fits(shape: tuple, want: tuple) -> bool:
    return len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want))


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
