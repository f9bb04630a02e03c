"""RunRecord: one lesson run as one frozen value, built once after training and then only read.

It holds the settings, the students and their scaling, the SnapshotLog the hooks filled, the
evaluations on all students after every step, and how the run ended. TensorBoard, the pages, the
terminal and the Lesson tab all read it; nothing writes into it. It is saved as one snapshot file:
the log's columns, plus members "record:<name>" and a "record" entry in the header.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.func import functional_call

from nn_lesson.data import CLASSES, Standardizer, StudentTable
from nn_lesson.hooks import SnapshotFileError, SnapshotLog
from nn_lesson.hooks.snapshot_file import read_snapshot_file, write_snapshot_file
from nn_lesson.lesson.run.schema import check_lesson_record
from nn_lesson.lesson.run.settings import LessonConfig, build_model, confidences
from nn_lesson.models import StudentNet

SNAPSHOT_FILE = "snapshots.npz"
PREFIX = "record:"


@dataclass(frozen=True)
class Evaluation:
    """The network on one group of students under the weights of every step. Row 0 is before training,
    row s+1 after recorded step s."""

    loss_by_step: torch.Tensor        # (rows + 1,)
    accuracy_by_step: torch.Tensor    # (rows + 1,)
    confidence_start: torch.Tensor    # (students, 2)
    confidence_final: torch.Tensor    # (students, 2)


@dataclass(frozen=True)
class EpochSummary:
    """Per epoch (cut-short epochs included): the batch-weighted mean of its step losses, and the loss and
    accuracy on all training and held-out students after its last step (None without held-out students)."""

    epoch: torch.Tensor               # 0-based epoch numbers
    end_step: torch.Tensor
    step_loss_mean: torch.Tensor
    train_loss: torch.Tensor
    train_accuracy: torch.Tensor
    heldout_loss: torch.Tensor | None
    heldout_accuracy: torch.Tensor | None


@dataclass(frozen=True)
class RunRecord:
    config: LessonConfig
    students: StudentTable            # every student of the data file, held-out ones marked
    scaler: Standardizer              # fitted on the training students only
    initial: dict[str, torch.Tensor]  # the parameters before the first step
    log: SnapshotLog                  # what the hooks captured
    train: Evaluation
    heldout: Evaluation | None        # None when the data has no held-out students
    stopped: str | None = None        # why training ended early ("diverged: ...", "interrupted"), else None
    coverage: str = ""                # the Recorder's report in one line: what the log holds and what not

    # ---- reading ----
    @functools.cached_property
    def training(self) -> StudentTable:
        return self.students.training()

    @functools.cached_property
    def held_out(self) -> StudentTable:
        return self.students.held_out()

    @property
    def names(self) -> tuple[str, ...]:
        return self.training.names

    @property
    def heldout_names(self) -> tuple[str, ...]:
        return self.held_out.names

    @functools.cached_property
    def model(self) -> StudentNet:
        """The architecture, for functional_call with recorded weights; its own weights are never read."""
        return build_model(self.config)

    def students_of(self, step: int) -> list[str]:
        samples = self.log[step].samples
        return [self.names[int(i)] for i in samples] if samples is not None else []

    def confidences(self, outputs: torch.Tensor) -> torch.Tensor:
        return confidences(self.config, outputs)

    def final(self) -> dict[str, torch.Tensor]:
        """The parameters after the last recorded step (the initial ones when no step was taken)."""
        return self.log[-1].after if len(self.log) else dict(self.initial)

    def trained_model(self) -> StudentNet:
        model = build_model(self.config)
        model.load_state_dict(self.final())
        return model

    def predict(self, params: dict[str, torch.Tensor], scaled_inputs: torch.Tensor) -> torch.Tensor:
        """PASS/FAIL confidences of the network with `params` on already standardised inputs."""
        with torch.no_grad():
            return self.confidences(functional_call(self.model, params, (scaled_inputs,)))

    @staticmethod
    def label(index: int | torch.Tensor) -> str:
        return CLASSES[int(index)]

    @functools.cached_property
    def epochs(self) -> EpochSummary:
        log = self.log
        if len(log) == 0:
            empty = torch.zeros(0)
            return EpochSummary(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), empty,
                                empty, empty, None if self.heldout is None else empty,
                                None if self.heldout is None else empty)
        epoch, batch = log.epoch, log.batch_size.to(torch.float64)
        epochs, counts = torch.unique_consecutive(epoch, return_counts=True)
        ends = counts.cumsum(0) - 1  # last row of each epoch
        seg = torch.repeat_interleave(torch.arange(len(epochs)), counts)
        weighted = torch.zeros(len(epochs), dtype=torch.float64).index_add_(0, seg, log.loss.double() * batch)
        total = torch.zeros(len(epochs), dtype=torch.float64).index_add_(0, seg, batch)
        after = ends + 1  # evaluation row s+1 is after step s
        held = self.heldout
        return EpochSummary(epochs, log.step[ends], (weighted / total).to(log.loss.dtype),
                            self.train.loss_by_step[after], self.train.accuracy_by_step[after],
                            None if held is None else held.loss_by_step[after],
                            None if held is None else held.accuracy_by_step[after])

    # ---- the file ----
    def save(self, path: str | Path) -> Path:
        s = self.students
        header = {"kind": "lesson", "config": self.config.to_dict(), "names": list(s.names),
                  "data": {"name": s.source, "sha256": s.sha256}, "stopped": self.stopped, "coverage": self.coverage}
        arrays = {"features": s.features, "labels": s.labels, "heldout": s.heldout,
                  "scaler_mean": self.scaler.mean, "scaler_std": self.scaler.std,
                  **{f"initial:{name}": t for name, t in self.initial.items()},
                  **_evaluation_arrays("train", self.train), **_evaluation_arrays("heldout", self.heldout)}
        return save_record(path, self.log, header, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "RunRecord":
        log, header, arrays = load_record(path, "lesson")
        check_lesson_record(path, log, header, arrays)
        try:
            students = StudentTable(tuple(header["names"]), arrays["features"], arrays["labels"],
                                    arrays["heldout"].to(torch.bool), header["data"]["name"], header["data"]["sha256"])
            return cls(LessonConfig(**header["config"]), students,
                       Standardizer(arrays["scaler_mean"], arrays["scaler_std"]),
                       {name: arrays[f"initial:{name}"] for name in log.param_names}, log,
                       _evaluation("train", arrays), _evaluation("heldout", arrays), header["stopped"],
                       str(header.get("coverage", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise SnapshotFileError(f"{path}: incomplete lesson run record ({type(err).__name__}: {err})") from None


def _evaluation_arrays(split: str, ev: Evaluation | None) -> dict[str, torch.Tensor]:
    return {} if ev is None else {f"{split}_{key}": value for key, value in asdict(ev).items()}


def _evaluation(split: str, arrays: dict[str, torch.Tensor]) -> Evaluation | None:
    if f"{split}_loss_by_step" not in arrays:
        return None
    return Evaluation(**{key: arrays[f"{split}_{key}"] for key in Evaluation.__dataclass_fields__})


def save_record(path: str | Path, log: SnapshotLog, record: dict[str, Any], arrays: dict[str, torch.Tensor]) -> Path:
    """One snapshot file holding the log's columns and a record's own header entry and members."""
    return write_snapshot_file(path, {**log.header(), "record": record},
                               {**log.arrays(), **{PREFIX + name: t for name, t in arrays.items()}})


def load_record(path: str | Path, kind: str) -> tuple[SnapshotLog, dict[str, Any], dict[str, torch.Tensor]]:
    """(log, the record's header entry, its members) of a run record of `kind` ("lesson" or "bridge")."""
    header, arrays = read_snapshot_file(path)
    record = header.get("record")
    if header.get("version") == 1:
        raise SnapshotFileError(f"{path}: a version 1 snapshot file (nn-lesson 0.1); its steps still load with "
                                "SnapshotLog.load, but re-run the lesson to step through it as a run")
    if not isinstance(record, dict) or record.get("kind") != kind:
        found = record.get("kind") if isinstance(record, dict) else None
        found = found if isinstance(found, str) or found is None else repr(found)[:40]
        what = {"bridge": "a bridge run", "lesson": "a lesson run", None: "a plain SnapshotLog with no run record"}
        raise SnapshotFileError(f"{path}: {what.get(found, repr(found))}, not {what[kind]}"
                                + ("; the lesson's --step reads lesson runs only" if kind == "lesson" else ""))
    log = SnapshotLog.from_file_contents(header, arrays)
    members = {name[len(PREFIX):]: torch.from_numpy(a) for name, a in arrays.items() if name.startswith(PREFIX)}
    return log, record, members


def run_file(path: Path) -> Path:
    """A run folder or a snapshot file -> the snapshot file."""
    return path / SNAPSHOT_FILE if path.is_dir() else path
