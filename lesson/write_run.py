"""Write a finished (or stopped) lesson run: the snapshot file and the TensorBoard events, staged then
published so a run folder is either complete or absent."""

from __future__ import annotations

from pathlib import Path

from lesson.run_dir import publish, staging_dir
from lesson.tb_events import EventWriter
from lesson.tensorboard_lesson import write_lesson_tensorboard
from lesson.train import LessonRun
from lesson.view import LessonView

SNAPSHOT_FILE = "snapshots.npz"


def write_run(run: LessonRun, target: Path) -> Path:
    staging = staging_dir(target)
    run.log.meta["stopped"] = run.stopped
    run.log.save(staging / SNAPSHOT_FILE)
    events = EventWriter(staging)
    try:
        write_lesson_tensorboard(events, LessonView.of(run.log), run.model)
    finally:
        events.close()
    return publish(staging, target)
