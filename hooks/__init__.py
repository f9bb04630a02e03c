"""Recorder (hooks on any nn.Module), SnapshotLog (columnar store) and the snapshot file. Imports torch only
(and numpy, which torch.from_numpy needs, for the .npz file)."""

from nn_lesson.hooks.policy import CapturePolicy
from nn_lesson.hooks.recorder import Recorder
from nn_lesson.hooks.snapshot_file import FORMAT, VERSION, SnapshotFileError
from nn_lesson.hooks.snapshot_log import STAT_NAMES, ParamSlot, Snapshot, SnapshotLog
from nn_lesson.hooks.snapshot_stream import StreamedLog
from nn_lesson.hooks.threads import threads_for, use_threads

__all__ = ["CapturePolicy", "Recorder", "SnapshotLog", "StreamedLog", "Snapshot", "ParamSlot", "SnapshotFileError",
           "STAT_NAMES", "FORMAT", "VERSION", "threads_for", "use_threads"]
