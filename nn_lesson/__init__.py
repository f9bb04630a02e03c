"""nn_lesson: the "Neural Network Training" lesson on real PyTorch, and the Recorder behind it.

The repository's top-level folders install under this one name: nn_lesson.data, nn_lesson.models,
nn_lesson.hooks and nn_lesson.lesson. The names most scripts need are here:

    from nn_lesson import Recorder, SnapshotLog, StudentNet, load_students, write_tensorboard

They are imported on first use, so `python -m nn_lesson` can set up its signal handling before torch loads.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "Standardizer": "nn_lesson.data", "load_students": "nn_lesson.data",
    "CapturePolicy": "nn_lesson.hooks", "Recorder": "nn_lesson.hooks", "SnapshotFileError": "nn_lesson.hooks",
    "SnapshotLog": "nn_lesson.hooks", "StudentNet": "nn_lesson.models", "make_mlp": "nn_lesson.models",
    "ResidualCNN": "nn_lesson.models", "StreamedLog": "nn_lesson.hooks",
    "write_tensorboard": "nn_lesson.lesson.board.your_model",
    "TensorBoardRecorderCallback": "nn_lesson.lesson.board.lightning",   # imports Lightning: the extra
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'nn_lesson' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
