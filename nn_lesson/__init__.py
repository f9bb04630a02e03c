"""nn_lesson: the "Neural Network Training" lesson on real PyTorch, and the Recorder behind it.

The repository's top-level folders install under this one name: nn_lesson.data, nn_lesson.models,
nn_lesson.hooks and nn_lesson.lesson. The names most scripts need are here:

    from nn_lesson import Recorder, SnapshotLog, StudentNet, load_students
"""

from nn_lesson.data import Standardizer, load_students
from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotFileError, SnapshotLog
from nn_lesson.models import StudentNet, make_mlp

__all__ = ["CapturePolicy", "Recorder", "SnapshotFileError", "SnapshotLog", "Standardizer", "StudentNet",
           "load_students", "make_mlp"]
