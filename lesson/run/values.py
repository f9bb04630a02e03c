"""Checks of the values a user types, one line each (argparse.ArgumentTypeError): shared by the command line
(lesson/cli.py) and the Lesson tab's "+ run" (lesson/board/new_run.py), which both import them from here."""

from __future__ import annotations

import argparse
import os

from nn_lesson.lesson.run.folder import RunDirError, check_name

FLOAT32_MAX = 3.4028234663852886e38


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def learning_rate(text: str) -> float:
    """A positive learning rate that float32 weights can hold (above ~3.4e38 SGD's lr × grad overflows)."""
    value = positive_float(text)
    if value > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {FLOAT32_MAX:.3g} (the largest float32), got {text}")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def seed(text: str) -> int:
    value = whole_number(text)
    if not -(2 ** 63) <= value < 2 ** 64:  # what torch.manual_seed accepts
        raise argparse.ArgumentTypeError(f"must be within -2**63 .. 2**64-1, got {text}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1..65535, got {text}")
    return value


def run_name(text: str) -> str:
    try:
        check_name(text)
    except RunDirError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def at_most(limit: int, why: str):
    """positive_int, bounded before any memory is allocated for it: one line naming the bound and its reason."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:,} ({why}), got {text}")
        return value
    return parse


def threads(text: str) -> int:
    cores = os.cpu_count() or 1
    return at_most(cores, f"the {cores} cores of this machine")(text)
