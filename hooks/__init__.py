"""Recorder (hooks on any nn.Module), SnapshotLog (columnar store) and the snapshot file. Imports torch only
(and numpy, which torch.from_numpy needs, for the .npz file)."""

from hooks.policy import CapturePolicy
from hooks.recorder import Recorder
from hooks.snapshot_file import FORMAT, VERSION, SnapshotFileError
from hooks.snapshot_log import STAT_NAMES, ParamSlot, Snapshot, SnapshotLog

__all__ = ["CapturePolicy", "Recorder", "SnapshotLog", "Snapshot", "ParamSlot", "SnapshotFileError",
           "STAT_NAMES", "FORMAT", "VERSION"]
