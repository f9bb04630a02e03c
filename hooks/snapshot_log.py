"""SnapshotLog: what a Recorder captured, one column per field, readable one step at a time.

    log[4].activations["hidden"]      # a Snapshot: one step's numbers, by module/parameter name
    log.loss                          # (steps,) one field over all steps
    log.param("hidden.weight", "update")   # (steps, 4, 3)

Column names: "inputs", "targets", "outputs" (or "outputs:<key>" for a tuple/dict), "loss", "epoch",
"batch_size", "samples", "lr", "grad_norm" (norm before clipping, kept only where clipping changed it),
"act:<module>", "act_grad:<module>" (a module's second call in one forward: "act:<module>#1"; a tuple
output: "act:<module>:0", "act:<module>:1:0", ...), "loss_scale" (GradScaler's scale, which the loss and
activation gradients are already divided by), "group_lr" (each parameter group's lr, with several groups),
"shape:<column>" (each row's own shape, kept once a column's rows differ in shape),
"param_before" / "param_grad" / "param_after" (every recorded parameter flattened into one row, in
`params` order; NaN where a parameter was not in the optimizer yet), and for the statistics policy
"stats:<tensor name>" rows of [mean, std, norm, min, max, histogram counts...].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from nn_lesson.hooks.columns import FIRST_CHUNK_ROWS, Column
from nn_lesson.hooks.snapshot_file import Blocks, is_column, read_snapshot_file, write_snapshot_file
from nn_lesson.hooks.statistics import STAT_NAMES, WorkBuffers, row_stats

# Steps staged before they are stacked into the columns: one chunk's first rows (see columns.py), so
# that one stack serves many steps and lands in one chunk -- unless they hold more than STAGED_BYTES, so
# that a large model's staged activations stay bounded. Staged tensors keep the allocator from reusing
# their memory: with 128 steps or 32 MiB staged, a statistics-only run's memory grew by 48 MiB from 500 to
# 20,000 steps (fragmentation between the staged tensors and the log's long-lived rows), and the
# benchmark MLP's full capture got dearer with 64 MiB staged.
STAGED_STEPS = FIRST_CHUNK_ROWS
STAGED_BYTES = 16 << 20


def _return_freed_memory() -> None:
    """Hand the chunks just freed back to the system. glibc keeps freed blocks below its mmap threshold, which
    it raises to the size of each large block freed (up to 32 MiB), so without this a thinned log's memory
    stays in the process. A no-op where glibc is not the allocator."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class ParamSlot:
    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Snapshot:
    """One step. Batch fields are cut to the step's own batch size."""

    step: int
    epoch: int
    samples: torch.Tensor | None
    inputs: torch.Tensor | None
    targets: torch.Tensor | None
    outputs: torch.Tensor | None
    loss: float | None
    lr: float | None
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    act_grads: dict[str, torch.Tensor] = field(default_factory=dict)
    before: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    after: dict[str, torch.Tensor] = field(default_factory=dict)
    update: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)


class SnapshotLog:
    """What the Recorder's hooks captured, and nothing else: the run's settings and evaluations belong to
    the run record (nn_lesson.lesson.run.record) that holds this log."""

    def __init__(self, params: list[ParamSlot] | None = None, layers: list[str] | None = None, stat_bins: int = 0,
                 row_shapes: bool = True, layer_types: dict[str, str] | None = None):
        self.params = list(params or [])
        # each recorded layer's class name (a Sequential's "0", "1" say nothing of what they are: Conv2d, ReLU)
        self.layer_types = dict(layer_types or {})
        # True: each row is whole unless a "shape:<column>" says otherwise. False (files before version 3):
        # batch fields are cut to the row's batch_size along their first dimension.
        self.row_shapes = row_shapes
        self.layers = list(layers or [])
        self.stat_bins = stat_bins
        self._columns: dict[str, Column] = {}
        # Committed steps not yet in their columns: (row, [(name, tensor-or-number, version)]). The hot
        # path only appends here; flush() moves a chunk's worth into the columns with one stack each.
        self._staged: list[tuple[int, list[tuple[str, Any, int | None]]]] = []
        self._stage_limit = STAGED_STEPS
        self._step_bytes = 0
        # Statistics policy: the staged weights before and (rows, weights after) of one flush, for the updates.
        self._stats_before: torch.Tensor | None = None
        self._stats_after: tuple[list[int], torch.Tensor] | None = None
        self._work = WorkBuffers()  # the statistics' temporaries, reused by every flush: memory stays flat
        self.steps = 0        # committed steps
        # Cells left out because the captured tensor was changed in place before it was stored: column -> rows.
        # The Recorder reports them; recording never raises for what the user's step did.
        self.changed: dict[str, int] = {}

    # ---- writing (used by the Recorder) ----
    @property
    def columns(self) -> dict[str, Column]:
        self.flush()
        return self._columns

    @columns.setter
    def columns(self, value: dict[str, Column]) -> None:
        self._staged.clear()
        self._columns = value

    def stage_step(self, row: int, items: list[tuple[str, Any, int | None]]) -> None:
        """Commit row `row`: items are (column name, detached tensor or number, tensor version or None)."""
        staged = self._staged
        if not staged:  # the first step of a batch sets how many steps this batch stages
            size = sum(v.numel() * v.element_size() for _, v, _ in items if isinstance(v, torch.Tensor))
            self._stage_limit = max(1, min(STAGED_STEPS, STAGED_BYTES // max(1, size)))
            self._step_bytes = size
        staged.append((row, items))
        self.steps = row + 1
        if len(staged) >= self._stage_limit:
            self.flush()

    def add_params(self, slots: list[ParamSlot]) -> None:
        """Parameters that joined the optimizer (add_param_group, unfreezing): new slots at the end of the
        flat rows; the rows before hold NaN there."""
        self.flush()  # a flush's rows then have one width
        self.params += slots

    def row_for(self, name: str, row: int, width: int, dtype: torch.dtype) -> torch.Tensor | None:
        """The storage of row `row` of a flat (width,) column, for the Recorder to copy a step's parameters
        straight into: one copy instead of a temporary and a stack. None where the row must be staged
        (the statistics policy, or a column of another dtype or width)."""
        if self.stat_bins:
            return None
        column = self._columns.get(name)
        if column is None:
            column = self.column(name, row_shape=(width,), dtype=dtype)
        if column.dtype != dtype or column.row_shape != (width,):
            return None
        return column.row(row)

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these rows (ascending), in order; the others' memory is freed. Columns are rebuilt one at a
        time, so the memory needed on top of the log is one column's kept rows."""
        self.flush()
        for name in list(self._columns):
            self._columns[name] = self._columns[name].keep(rows)
        self.steps = len(rows)
        _return_freed_memory()

    @property
    def held_bytes(self) -> int:
        """Bytes this log holds now without flushing: its columns' chunks (allocated rows included) and the
        tensors staged for them."""
        staged = len(self._staged) * self._step_bytes  # as the batch's first step: O(1), it runs every step
        return staged + sum(c.nbytes for c in self._columns.values())

    def flush(self) -> None:
        """Move the staged steps into their columns. The staged list is let go only when every column has its
        rows: a flush cut short (Ctrl-C arrives between two columns) is done again whole by the next one,
        writing the same rows with the same values, so no committed row is left with some fields absent."""
        if not self._staged:
            return
        staged = self._staged
        names = [item[0] for item in staged[0][1]]
        rows = [row for row, _ in staged]
        if all([item[0] for item in items] == names for _, items in staged):
            # The usual case, every step with the same fields in the same order: transpose, no per-item dicts.
            for name, column in zip(names, zip(*(items for _, items in staged))):
                self._put(name, rows, column)
        else:
            by_name: dict[str, tuple[list[int], list]] = {}
            for row, items in staged:
                for item in items:
                    rows_, values = by_name.setdefault(item[0], ([], []))
                    rows_.append(row)
                    values.append(item)
            for name, (rows_, values) in by_name.items():
                self._put(name, rows_, values)
        self._put_updates()
        self._staged = []

    def _put_updates(self) -> None:
        before, after = self._stats_before, self._stats_after
        self._stats_before = self._stats_after = None
        if after is None or before is None:
            return
        rows = after[0]
        update = torch.sub(after[1], before, out=self._work.get("update", tuple(before.shape), before.dtype))
        for p in self.params:
            stats = row_stats(update[:, p.offset: p.offset + p.numel], self.stat_bins, self._work)
            self.column(f"stats:{p.name}:update", stats[0]).put_block(rows, stats)

    def _put(self, name: str, rows: list[int], items) -> None:
        """Write one column's staged rows; items are (name, value, version-when-captured or None). Runs for
        every column of every flush: each check is one pass in a comprehension, not a Python loop."""
        values = [item[1] for item in items]
        first = values[0]
        if not isinstance(first, torch.Tensor):
            dtype = torch.int64 if isinstance(first, int) else torch.float64
            self.column(name, row_shape=(), dtype=dtype).put_rows(rows, values)
            return
        versions = [item[2] for item in items]
        if versions.count(None) != len(versions):
            if [None if v is None else t._version for t, v in zip(values, versions)] != versions:
                # Changed in place after it was captured: that cell is left absent (and counted), never raised
                # at the flush, which runs inside the user's optimizer.step().
                keep = [v is None or t._version == v for t, v in zip(values, versions)]
                self.changed[name] = self.changed.get(name, 0) + keep.count(False)
                rows = [r for r, k in zip(rows, keep) if k]
                values = [t for t, k in zip(values, keep) if k]
                if not rows:
                    return
                first = values[0]
        if self.stat_bins and first.dim() > 0 and not name.startswith("stats:"):
            # statistics policy; 0-d values (the loss) and rows the Recorder already reduced are kept as they are
            self._put_stats(name, rows, values)
            return
        column = self.column(name, first)
        dtypes = {t.dtype for t in values}
        if dtypes != {column.dtype}:
            dtype = column.dtype
            for d in dtypes:
                dtype = torch.promote_types(dtype, d)
            if dtype != column.dtype:
                column.promote(dtype)
        shapes = [t.shape for t in values]
        whole = shapes.count(column.row_shape) == len(shapes)
        shape_name = f"shape:{name}"
        if shape_name in self._columns or (not whole and not name.startswith("param_")):
            self._put_shapes(shape_name, column.row_shape, rows, shapes)
        column.put_rows(rows, values, whole)

    def _put_shapes(self, name: str, row_shape: tuple[int, ...], rows: list[int], shapes: list) -> None:
        """Each row's own shape, from the first row whose shape differs: the rows before it all had the
        column's shape until then."""
        column = self._columns.get(name)
        if column is None:
            column = self.column(name, row_shape=(len(row_shape),), dtype=torch.int64)
            if rows[0]:
                column.put_rows(list(range(rows[0])), [torch.tensor(row_shape)] * rows[0])
        column.put_rows(rows, [torch.tensor(s) for s in shapes])

    def _put_stats(self, name: str, rows: list[int], tensors: list[torch.Tensor]) -> None:
        """Statistics policy: reduce a batch of staged steps to statistics rows; the raw values are dropped."""
        if any(t.shape != tensors[0].shape for t in tensors):  # batches of different sizes: one by one
            for row, t in zip(rows, tensors):
                self._put_stats(name, [row], [t])
            return
        first = tensors[0]
        if all(t.dtype == first.dtype for t in tensors):
            stacked = torch.stack(tensors, out=self._work.get(f"stack:{name}", (len(tensors), *first.shape), first.dtype))
        else:
            stacked = torch.stack(tensors)
        if name.startswith("param_"):
            which = {"param_before": "value", "param_grad": "grad", "param_after": "after"}[name]
            if which == "after":  # the update is what the statistics keep: after - before, per parameter
                self._stats_after = (rows, stacked)
                return
            if which == "value":
                self._stats_before = stacked
            groups = [(f"{p.name}:{which}", stacked[:, p.offset: p.offset + p.numel]) for p in self.params]
        else:
            groups = [(name, stacked)]
        for stat_name, values in groups:
            stats = row_stats(values, self.stat_bins, self._work)
            self.column(f"stats:{stat_name}", stats[0]).put_block(rows, stats)

    def column(self, name: str, like: torch.Tensor | None = None, row_shape: tuple[int, ...] | None = None,
               dtype: torch.dtype | None = None) -> Column:
        """The column `name`, created on first use with rows shaped like `like` (or row_shape/dtype)."""
        col = self._columns.get(name)
        if col is None:
            shape = tuple(like.shape) if row_shape is None else row_shape
            col = self._columns[name] = Column(shape, like.dtype if dtype is None else dtype, name=name)
        return col

    # ---- reading ----
    def __repr__(self) -> str:
        params = ", ".join(f"{p.name} {tuple(p.shape)}" for p in self.params)
        kind = f"statistics ({self.stat_bins} bins)" if self.stat_bins else "full values"
        return (f"SnapshotLog({self.steps} steps of {kind}; parameters: {params or 'none'}; "
                f"layers: {', '.join(self.layers) or 'none'})")

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Snapshot]:
        return (self[i] for i in range(self.steps))

    def has(self, name: str) -> bool:
        return name in self.columns

    def values(self, name: str) -> torch.Tensor:
        """A column over all committed rows: (rows, *row_shape)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; this log has {', '.join(self.columns) or 'none'}")
        return self.columns[name].values(self.steps)

    @property
    def step(self) -> torch.Tensor:
        """The training step of each row (not the row number when only every k-th step is kept)."""
        return self.values("step") if self.has("step") else torch.arange(self.steps)

    @property
    def loss(self) -> torch.Tensor:
        if self.steps and not self.has("loss"):
            raise KeyError("no loss was recorded: the Recorder saw neither an nn.Module loss_fn nor a "
                           "Tensor.backward() call (rec.report() says what it saw)")
        return self.values("loss")

    @property
    def lr(self) -> torch.Tensor:
        return self.values("lr")

    @property
    def grad_norm(self) -> torch.Tensor:
        """(rows,) the norm of all recorded gradients as backward left them, before any clipping: kept by the
        Recorder where the optimizer's gradient differed from backward's, else the recorded gradient's norm."""
        grads = self.values("param_grad").double()
        norm = torch.linalg.vector_norm(grads, dim=1).to(self.values("param_grad").dtype)
        if self.has("grad_norm"):
            kept = self.values("grad_norm").to(norm.dtype)  # NaN: not kept (unclipped); -1: could not be seen
            norm = torch.where(torch.isnan(kept), norm, torch.where(kept < 0, float("nan"), kept))
        return norm

    @property
    def loss_scale(self) -> torch.Tensor:
        """(rows,) GradScaler's scale at each step (1 where no GradScaler stepped): the recorded loss and
        activation gradients are already in the units of the unscaled loss."""
        return self.values("loss_scale") if self.has("loss_scale") else torch.ones(self.steps, dtype=torch.float64)

    @property
    def group_lr(self) -> torch.Tensor:
        """(rows, groups) each parameter group's lr (NaN for a group not there yet)."""
        return self.values("group_lr") if self.has("group_lr") else self.lr[:, None]

    @property
    def epoch(self) -> torch.Tensor:
        return self.values("epoch")

    @property
    def samples(self) -> torch.Tensor:
        return self.values("samples")

    @property
    def inputs(self) -> torch.Tensor:
        return self.values("inputs")

    @property
    def targets(self) -> torch.Tensor:
        return self.values("targets")

    @property
    def outputs(self) -> torch.Tensor:
        return self.values("outputs")

    @property
    def batch_size(self) -> torch.Tensor:
        return self.values("batch_size")

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def slot(self, name: str) -> ParamSlot:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"no parameter {name!r}; recorded: {', '.join(self.param_names)}")

    def activation(self, name: str) -> torch.Tensor:
        return self.values(f"act:{name}")

    def activation_grad(self, name: str) -> torch.Tensor:
        return self.values(f"act_grad:{name}")

    def param(self, name: str, which: str = "after") -> torch.Tensor:
        """(rows, *shape) of one parameter: which is before | grad | after | update (after - before)."""
        p = self.slot(name)
        if which == "update":
            return self.param(name, "after") - self.param(name, "before")
        if which not in ("before", "grad", "after"):
            raise ValueError(f"which must be before, grad, after or update, not {which!r}")
        flat = self.values(f"param_{which}")
        return flat[:, p.offset: p.offset + p.numel].reshape(-1, *p.shape)

    def stat(self, name: str, stat: str) -> torch.Tensor:
        """A statistic over steps for the statistics policy: stat in mean|std|norm|min|max|hist."""
        values = self.values(f"stats:{name}")
        if stat == "hist":
            return values[:, len(STAT_NAMES):]
        return values[:, STAT_NAMES.index(stat)]

    def __getitem__(self, i: int) -> Snapshot:
        if not -self.steps <= i < self.steps:
            raise IndexError(f"step {i} out of range; this log has {self.steps} steps")
        i %= self.steps
        columns = self.columns
        cells = {name: col.at(i) for name, col in columns.items()}  # (reading pads rows no write reached)
        row = {name: v for name, v in cells.items() if columns[name].present(i)}  # absent cells: no value
        b = int(row["batch_size"]) if "batch_size" in row else None

        def cut(name: str) -> torch.Tensor | None:
            v = row.get(name)
            if v is None or v.dim() == 0:
                return v
            shape = row.get(f"shape:{name}")
            if shape is not None:
                return v[tuple(slice(0, int(n)) for n in shape)]
            return v[:b] if b is not None and not self.row_shapes else v

        def params(which: str) -> dict[str, torch.Tensor]:
            flat = row.get(f"param_{which}")
            if flat is None:
                return {}
            return {p.name: flat[p.offset: p.offset + p.numel].reshape(p.shape) for p in self.params}

        before, after = params("before"), params("after")
        return Snapshot(
            step=int(row["step"]) if "step" in row else i,
            epoch=int(row["epoch"]) if "epoch" in row else 0,
            samples=cut("samples"), inputs=cut("inputs"), targets=cut("targets"), outputs=cut("outputs"),
            loss=float(row["loss"]) if "loss" in row else None,
            lr=float(row["lr"]) if "lr" in row else None,
            activations={k[4:]: cut(k) for k in row if k.startswith("act:")},
            act_grads={k[9:]: cut(k) for k in row if k.startswith("act_grad:")},
            before=before, grads=params("grad"), after=after,
            update={k: after[k] - before[k] for k in after if k in before},
            stats={k[6:]: self._stat_dict(v) for k, v in row.items() if k.startswith("stats:")},
        )

    @staticmethod
    def _stat_dict(row: torch.Tensor) -> dict[str, Any]:
        out: dict[str, Any] = {s: float(row[j]) for j, s in enumerate(STAT_NAMES)}
        out["hist"] = row[len(STAT_NAMES):]
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of tensor storage this log holds."""
        return sum(c.nbytes for c in self.columns.values())

    @property
    def number_bytes(self) -> int:
        """Bytes of the numbers themselves (committed rows, batch padding included)."""
        return sum(c.values(self.steps).numel() * c.dtype.itemsize for c in self.columns.values())

    # ---- files ----
    def header(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "params": [{"name": p.name, "shape": list(p.shape), "offset": p.offset} for p in self.params],
            "layers": self.layers,
            **({"layer_types": self.layer_types} if self.layer_types else {}),
            "stat_names": list(STAT_NAMES) if self.stat_bins else [],
            "stat_bins": self.stat_bins,
            "row_shapes": self.row_shapes,
            # rows of a column that no step wrote (they hold NaN / -1 / False): [[start, end], ...]
            "absent": {name: [list(r) for r in ranges] for name, col in self.columns.items()
                       if (ranges := col.absent_ranges(self.steps))},
        }

    def arrays(self) -> dict[str, torch.Tensor]:
        return {name: col.values(self.steps) for name, col in self.columns.items()}

    def save(self, path: str | Path) -> Path:
        """Write the log to `path` (.npz, see README "Snapshot file"); atomic: write, then rename."""
        header = self.header()
        # Each column written a chunk at a time: never a copy of the whole log, nor of one whole column.
        return write_snapshot_file(path, header, (
            (name, Blocks((self.steps, *col.row_shape), col.dtype, col.blocks(self.steps)))
            for name, col in self.columns.items()))

    @classmethod
    def load(cls, path: str | Path) -> "SnapshotLog":
        """The log in a snapshot file (a run record's file too: its own members are left unread), or in a folder a
        Recorder streamed to (stream_to=): then read lazily, a segment at a time (see snapshot_stream.py)."""
        if Path(path).is_dir():
            from nn_lesson.hooks.snapshot_stream import StreamedLog
            return StreamedLog.open(path)
        return cls.from_file_contents(*read_snapshot_file(path))

    @classmethod
    def open(cls, path: str | Path) -> "SnapshotLog":
        """The log in a snapshot file or streamed folder, read lazily: a row, or a column, when asked for (memory: what
        is asked for, not the file). The file stays open while the log is in use; SnapshotLog.load reads it all."""
        from nn_lesson.hooks.snapshot_stream import StreamedLog
        return StreamedLog.open(path) if Path(path).is_dir() else StreamedLog.open_file(path)

    @classmethod
    def from_file_contents(cls, header: dict[str, Any], arrays: dict[str, Any]) -> "SnapshotLog":
        log = cls([ParamSlot(p["name"], tuple(p["shape"]), p["offset"]) for p in header["params"]],
                  header["layers"], header.get("stat_bins", 0), header.get("row_shapes", False),
                  header.get("layer_types"))
        log.steps = header["steps"]
        absent = header.get("absent", {})
        log.columns = {name: Column.from_values(torch.from_numpy(a), name, absent.get(name))
                       for name, a in arrays.items() if is_column(name)}
        return log
