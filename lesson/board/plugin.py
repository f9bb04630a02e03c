"""The "Lesson" tab: a TensorBoard plugin that steps through every recorded step of a run.

TensorBoard's image dashboard keeps a sample of each tag's images and cannot show one step exactly; this tab
reads the run's snapshot file itself and serves its numbers as JSON to one plain ES module
(static/index.js, no build step, nothing fetched from the network) that draws the network as SVG.

Modelled on TensorBoard's examples/plugins/example_basic (a TBPlugin, FrontendMetadata(es_module_path=...))
and registered through the `tensorboard_plugins` entry point in pyproject.toml.

Routes (under /data/plugin/lesson/), all JSON except index.js:
  /index.js                 the front end
  /runs                     run folders under the logdir that hold a snapshots.npz, each with its kind and
                            time, and the run the tab opens on (the newest lesson run, else the first by name)
  /run?run=R                the run: settings, every step's loss, the pages, the story's stops
  /step?run=R&step=N        row N (0-based, every step): weights before/gradient/-lr*gradient/after, the
                            students with their confidences and losses, the node values
  /model_step?run=R&step=N[&with=R2][&series=0]  your own model's health at row N (lesson/board/model_view.py),
                            beside a second model run R2 on one colour scale; series=0 leaves out the ratio over
                            every step (the same at every step)
  /decision_map?run=R&step=N[&before=1]  the decision map (nn_lesson.lesson.story.decision_map) after step N
                            (before it, with before=1)
  /new_run (POST, JSON)     train a new lesson run through the nn-lesson command itself (lesson/board/new_run.py)
A run is a folder under the logdir; `..`, absolute paths and anything that resolves outside the logdir
(symlinks included) are refused with 400 and a JSON error, as are missing or malformed arguments.
"""

from __future__ import annotations

import collections
import errno
import json
import logging
import math
import os
import re
import sys
import threading
import time
from pathlib import Path, PurePosixPath

from werkzeug import wrappers

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from nn_lesson.lesson.board.safe_open import NotRegularFile, identity, opened

PLUGIN_NAME = "lesson"
SNAPSHOT_FILE = "snapshots.npz"
STATIC = Path(__file__).parent / "static"
MAX_DEPTH = 4          # how deep under the logdir runs are looked for
CACHE_RUNS = 4         # run records kept in memory (a lesson run is ~0.2 MB)
CACHE_KINDS = 4096     # /runs entries kept (a few hundred bytes each)
ACTIVE_RECHECK_S = 5.0  # is_active() looks at the disk at most this often while it finds nothing


logger = logging.getLogger(__name__)


class BadRequest(Exception):
    """An argument the route cannot serve: answered with `status` (400 unless said) and {"error": message}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _json(request, data, status: int = 200):
    """TensorBoard's own responder (nosniff, CSP, gzip where asked); NaN and infinities travel as null."""
    try:
        body = json.dumps(data, allow_nan=False, default=_plain)
    except ValueError:  # a non-finite float somewhere in the answer: a diverged run's numbers
        body = json.dumps(_nulls(data), allow_nan=False, default=_plain)
    return http_util.Respond(request, body, "application/json", code=status)


def _nulls(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls(v) for v in value]
    return value


def _plain(value):
    raise TypeError(f"not JSON: {type(value).__name__}")


def _finite(values) -> list:
    """Floats for JSON: NaN and infinities (a diverged run) become None."""
    if isinstance(values, list):
        return [_finite(v) for v in values]
    return values if isinstance(values, (int, str)) or values is None or math.isfinite(values) else None


def _tolist(tensor) -> list:
    return _finite(tensor.tolist())


class LessonPlugin(base_plugin.TBPlugin):
    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._logdir = context.logdir or ""
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._kinds: collections.OrderedDict = collections.OrderedDict()   # (run, file identity) -> /runs entry
        self._active = False
        self._checked = -math.inf
        from nn_lesson.lesson.board.new_run import NewRunGate
        flags = getattr(context, "flags", None)
        self._gate = NewRunGate(flags)          # who may start a run from the tab, one at a time, how many
        if flags is not None:                   # a real server: its user learns the token on their terminal
            print(self._gate.address_line(flags), file=sys.stderr, flush=True)

    # ---- TensorBoard's side ----
    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Lesson", disable_reload=True)

    def is_active(self) -> bool:
        """Cheap: once a snapshot file has been seen the answer stays True; else the disk is looked at (a
        bounded walk that stops at the first file) at most every ACTIVE_RECHECK_S seconds."""
        if self._active or not self._logdir:
            return self._active
        now = time.monotonic()
        if now - self._checked >= ACTIVE_RECHECK_S:
            self._checked = now
            self._active = next(self._walk(), None) is not None
        return self._active

    def get_plugin_apps(self) -> dict:
        return {"/index.js": self._serve_js, "/runs": self._serve_runs, "/run": self._serve_run,
                "/step": self._serve_step, "/decision_map": self._serve_decision_map, "/new_run": self._serve_new_run,
                "/model_view.js": self._serve_model_view_js, "/model_step": self._serve_model_step}

    # ---- routes ----
    @wrappers.Request.application
    def _serve_js(self, request):
        return http_util.Respond(request, (STATIC / "index.js").read_bytes(), "application/javascript")

    @wrappers.Request.application
    def _serve_model_view_js(self, request):   # imported by index.js: your own model's view
        return http_util.Respond(request, (STATIC / "model_view.js").read_bytes(), "application/javascript")

    @wrappers.Request.application
    def _serve_model_step(self, request):
        """/model_step?run=R&step=N[&with=R2][&series=0]: your own model's health at row N
        (lesson/board/model_view.py); with a second model run R2 on screen beside it (vs), on one colour scale for
        both; series=0 without the ratio over every step (the tab has it after the first step)."""
        def build():
            from nn_lesson.lesson.board.model_view import model_step

            def model_run(key):
                snapshot = self._run_arg(request, key)
                loaded = self._load(snapshot)
                if loaded["kind"] != "model":
                    raise BadRequest(f"model_step: {loaded['name']} is a {loaded['kind']} run, not your own model's")
                root = Path(self._logdir).resolve()      # statistics.npz beside it is opened under root, as the run
                return loaded, root, snapshot.parent.relative_to(root).parts
            loaded, root, parts = model_run("run")
            other = model_run("with") if request.args.get("with") else None
            return model_step(loaded, self._step_arg(request, loaded), root, parts, other,
                              series=request.args.get("series") != "0")
        return self._answer(request, build)

    @wrappers.Request.application
    def _serve_runs(self, request):
        def build():
            runs = sorted(self._walk())
            details = [self._describe(run) for run in runs]
            lessons = [d for d in details if d["kind"] == "lesson"]
            newest = max(lessons, key=lambda d: (d["modified"], d["run"]))["run"] if lessons else None
            return {"runs": runs, "details": details, "default": newest or (runs[0] if runs else None)}
        return self._answer(request, build)

    def _describe(self, run: str) -> dict:
        """{run, kind ("lesson", "bridge", "model" or "unreadable"), modified (seconds since the epoch)}, from the
        snapshot file's header alone, cached while the file is unchanged."""
        from nn_lesson.hooks.snapshot_file import SnapshotFileError, read_snapshot_header
        try:
            with opened(Path(self._logdir), _parts(run), SNAPSHOT_FILE) as (_, st, readable):
                key = (run, identity(st))
                with self._lock:
                    if key in self._kinds:
                        self._kinds.move_to_end(key)
                        return self._kinds[key]
                try:
                    record = read_snapshot_header(readable).get("record")
                    kind = record.get("kind") if isinstance(record, dict) else "model"
                    kind = kind if kind in ("lesson", "bridge") else "model"   # any other log: your own model
                except (SnapshotFileError, OSError):
                    kind = "unreadable"
        except OSError:       # gone, a link, a pipe: never read
            return {"run": run, "kind": "unreadable", "modified": 0}
        described = {"run": run, "kind": kind, "modified": st.st_mtime}
        with self._lock:
            self._kinds[key] = described
            while len(self._kinds) > CACHE_KINDS:
                self._kinds.popitem(last=False)
        return described

    @wrappers.Request.application
    def _serve_new_run(self, request):
        """Train one lesson run for the local user who started this server (lesson/board/new_run.py says who may,
        and why); every refusal is 4xx JSON in one line."""
        from nn_lesson.lesson.board.new_run import NewRunRefused, command_line, parse_body, train_new_run
        gate = self._gate
        refusal = gate.refusal(request)
        if refusal:
            return _json(request, {"error": refusal}, 403)
        if not self._logdir:
            return _json(request, {"error": "this TensorBoard has no --logdir to write a new run into"}, 400)
        try:
            settings = parse_body(request)
            command_line(Path(self._logdir), settings)          # the settings, checked before any bound is spent
        except NewRunRefused as err:
            return _json(request, {"error": str(err)}, err.status)
        if not gate.training.acquire(blocking=False):
            return _json(request, {"error": "a new run is already training; one at a time"}, 409)
        try:
            bound = gate.bound()
            if bound:
                return _json(request, {"error": bound}, 429)

            def build():
                try:
                    done = train_new_run(Path(self._logdir), settings)
                except NewRunRefused as err:
                    raise BadRequest(str(err), err.status) from None
                gate.account(Path(self._logdir), done["run"])
                return done
            return self._answer(request, build)
        finally:
            gate.training.release()

    @wrappers.Request.application
    def _serve_run(self, request):
        return self._answer(request, lambda: self._run_json(self._load(self._run_arg(request))))

    @wrappers.Request.application
    def _serve_step(self, request):
        def build():
            loaded = self._load(self._run_arg(request))
            return self._step_json(loaded, self._step_arg(request, loaded))
        return self._answer(request, build)

    @wrappers.Request.application
    def _serve_decision_map(self, request):
        def build():
            loaded = self._load(self._run_arg(request))
            row = self._step_arg(request, loaded)
            if loaded["kind"] != "lesson":
                return {"available": False}
            from nn_lesson.lesson.story.decision_map import decision_grid
            # before=1: the map as the step found it (after the step before, or the starting weights)
            before = request.args.get("before") == "1"
            grid = decision_grid(_private(loaded["record"]), (row - 1 if row else None) if before else row)
            return {"available": True, "map": {**_jsonable(grid), "answers": grid.answers.tolist(),
                                               "names": list(loaded["record"].names)}}
        return self._answer(request, build)

    @staticmethod
    def _answer(request, build):
        """Every JSON route's answer: 2xx, or 4xx with {"error": one line}. Never a 500, whatever the logdir
        holds: a file that cannot be read is the request's problem, not the server's."""
        from nn_lesson.hooks import SnapshotFileError
        try:
            return _json(request, build())
        except (BadRequest, SnapshotFileError) as err:
            return _json(request, {"error": str(err)}, getattr(err, "status", 400))
        except OSError as err:  # a symlink loop, a name longer than the file system allows, no permission
            missing = err.errno in (errno.ENOENT, errno.ENOTDIR)
            return _json(request, {"error": f"run: cannot be read ({err.strerror or type(err).__name__})"},
                         404 if missing else 400)
        except Exception as err:  # noqa: BLE001 - a malformed run must not take the route down with a 500
            logger.warning("lesson plugin: %s refused: %s", request.path, err, exc_info=True)
            return _json(request, {"error": f"run: cannot be shown ({type(err).__name__}: {str(err)[:200]})"}, 400)

    # ---- arguments: only run folders under the logdir ----
    def _run_arg(self, request, key: str = "run") -> Path:
        run = request.args.get(key)
        if run is None or run == "":
            raise BadRequest(f"missing argument '{key}' (a run folder under the logdir, as /runs lists them)")
        if "\x00" in run or "\\" in run:
            raise BadRequest("run: not a run name")
        if run.startswith("/") or os.path.isabs(run) or re.match(r"^[A-Za-z]:", run):
            raise BadRequest("run: absolute paths are refused; name a run folder under the logdir")
        if ".." in PurePosixPath(run).parts:
            raise BadRequest("run: '..' is refused; name a run folder under the logdir")
        if not self._logdir:
            raise BadRequest("this TensorBoard has no --logdir")
        # Spelled under the logdir, not yet looked at: _load opens it without following any link (safe_open.py).
        return Path(self._logdir).resolve().joinpath(*_parts(run), SNAPSHOT_FILE)

    @staticmethod
    def _step_arg(request, loaded: dict) -> int:
        raw = request.args.get("step")
        if raw is None or raw == "":
            raise BadRequest("missing argument 'step' (a row number, 0 for the first recorded step)")
        if not re.fullmatch(r"[0-9]{1,9}", raw):
            raise BadRequest(f"step: not a row number: {raw[:40]!r}")
        row, steps = int(raw), len(loaded["log"])
        if row >= steps:
            raise BadRequest(f"step: row {row} out of range; this run has {steps} recorded steps (0..{steps - 1})")
        return row

    def _walk(self):
        """Run names (paths relative to the logdir, '/'-separated) of folders holding a snapshot file; hidden
        folders (a run still being written) and symlinked folders are skipped."""
        root = Path(self._logdir)
        if not root.is_dir():
            return
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name == SNAPSHOT_FILE and entry.is_file(follow_symlinks=False):
                    yield PurePosixPath(*Path(folder).relative_to(root).parts).as_posix() or "."
                elif (depth < MAX_DEPTH and not entry.name.startswith(".")
                      and entry.is_dir(follow_symlinks=False)):
                    stack.append((Path(entry.path), depth + 1))

    # ---- reading runs ----
    def _load(self, snapshot: Path) -> dict:
        """The run behind a snapshot file (as _run_arg spells it), cached while it is the same file: the cache is
        keyed by the opened file's identity (device, inode, size, mtime, ctime), so an atomic replace is read
        afresh at the next request. Every folder on the way and the file are opened without following a link,
        the file must be regular (checked on the descriptor), and what is read is that very descriptor's file."""
        root = Path(self._logdir).resolve()
        parts = snapshot.parent.relative_to(root).parts
        name = PurePosixPath(*parts).as_posix() if parts else "."
        try:
            with opened(root, parts, SNAPSHOT_FILE) as (_, st, readable):
                key = (name, identity(st))
                with self._lock:
                    if key in self._cache:
                        self._cache.move_to_end(key)
                        return self._cache[key]
                loaded = _read_run(readable, snapshot)
        except NotRegularFile as err:
            raise BadRequest(f"run: {name}/{err}; refused") from None
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                raise BadRequest(f"run: no run {name!r} with a {SNAPSHOT_FILE} under the logdir") from None
            if err.errno == errno.ELOOP:
                raise BadRequest(f"run: {name!r} reaches its {SNAPSHOT_FILE} through a symbolic link, which could lead "
                                 "outside the logdir; refused") from None
            raise
        loaded["name"] = name
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > CACHE_RUNS:
                self._cache.popitem(last=False)
        return loaded

    def _run_json(self, loaded: dict) -> dict:
        return loaded["run_json"]

    def _step_json(self, loaded: dict, row: int) -> dict:
        if loaded["kind"] != "lesson":
            return {**_model_step(loaded["log"], row), "kind": loaded["kind"]}
        return _lesson_step(loaded, row)


def _parts(run: str) -> tuple[str, ...]:
    """A run name's folders under the logdir ("." and empty parts dropped; '..' was refused before)."""
    return tuple(p for p in PurePosixPath(run).parts if p not in (".", ""))


def _private(record):
    """The run record with a network of its own, for one request's evaluations.

    A RunRecord evaluates recorded weights with torch.func.functional_call on `record.model`, which swaps that
    module's parameters in place while it runs: two request threads evaluating through one cached record's
    module would each compute with the other's weights. A copy of the record (its fields shared, read only)
    builds its own module the first time it is used: ~0.1 ms against ~15 ms for a decision map, and no thread
    waits for another, as it would behind a lock."""
    import dataclasses
    return dataclasses.replace(record)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return _finite(value) if isinstance(value, float) else value


def _read_run(snapshot: str, shown: Path) -> dict:
    """A lesson run (its record), or any other recorded model: a bridge run, or a user's own log written by
    write_tensorboard; told apart by the header alone. `snapshot` is what is read (the opened file), `shown`
    the name errors give."""
    from nn_lesson.hooks import SnapshotLog
    from nn_lesson.hooks.snapshot_file import read_snapshot_header
    from nn_lesson.lesson.run.record import RunRecord
    try:
        record = read_snapshot_header(snapshot).get("record")
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind != "lesson":
            # read lazily: a row when a step is asked for (a real model's run is gigabytes; loading it whole took
            # 37 s and 4 GB for a 1,500-step ResNet); the file stays open, the one that was checked
            log = SnapshotLog.open(snapshot)
            kind = "bridge" if kind == "bridge" else "model"
            return {"kind": kind, "log": log, "run_json": _model_run(log, kind)}
        record = RunRecord.load(snapshot)
    except (OSError, ValueError) as err:  # SnapshotFileError is a ValueError: one line, the file's problem
        raise BadRequest(f"run: {shown.name} cannot be read: {str(err).replace(snapshot, str(shown))}") from None
    return {"kind": "lesson", "log": record.log, "record": record, "run_json": _lesson_run(record),
            "lr": record.log.lr.tolist() if record.log.has("lr") else [record.config.lr] * len(record.log)}


# ---- the lesson run ----
def page_rows(record, n_pages: int) -> list[int]:
    """The recorded row each of the lesson's pages is about: 01-03 the first step, 04/05 step 0, 06/07 step 1,
    08/09 step 2, 10/11 the last step."""
    last = max(len(record.log) - 1, 0)
    rows = [0, 0, 0, 0, 0, 1, 1, 2, 2, last, last]
    return [min(r, last) for r in (rows + [0] * n_pages)[:n_pages]]


def page_moment(title: str) -> str:
    """The moment a page is about, which the tab shows beside it: "start" (01-03, the network before any step:
    the starting weights, nobody flowing through it yet), "step" (04-09, the page's step and its students),
    "heldout" (10, the trained network on the held-out students), "end" (11, the trained network)."""
    number = title[:2]
    if number in ("01", "02", "03"):
        return "start"
    if number == "10":
        return "heldout"
    if number == "11":
        return "end"
    return "step"


def heldout_view(record) -> dict | None:
    """The held-out students through the weights after the last step, as the step route gives a step's own
    students: raw and standardised inputs, hidden values, confidences, truth, and whether each answer is right
    (a NaN confidence is never right). None when the data has no held-out students."""
    import torch
    from torch.func import functional_call
    from nn_lesson.lesson.story.claims import correct
    table = record.held_out
    if record.heldout is None or not len(table.names):
        return None
    record = _private(record)   # a forward hook goes on its module: never on one another thread evaluates with
    final = record.final()
    scaled = record.scaler(table.features)
    seen = {}
    handle = record.model.hidden_act.register_forward_hook(lambda m, i, o: seen.__setitem__("hidden", o))
    try:
        with torch.no_grad():
            outputs = functional_call(record.model, final, (scaled,))
    finally:
        handle.remove()
    conf = record.confidences(outputs)
    right = correct(conf, table.labels)
    return {"names": list(table.names), "raw": _tolist(table.features), "inputs": _tolist(scaled),
            "hidden": _tolist(seen["hidden"]), "confidences": _tolist(conf),
            "truth": [record.label(v) for v in table.labels], "right": [bool(v) for v in right],
            "step": int(record.log.step[-1]) if len(record.log) else None}


MOVED_LINES = 3  # the lines of a step drawn highlighted: its largest |after − before| (more where moves tie)
TIED = 1e-5      # moves this close (relative) are equal: float32 rounding, far below the 4 decimals shown


def _lesson_run(record) -> dict:
    from tensorboard.plugin_util import markdown_to_safe_html
    from nn_lesson.lesson.board.diagram import FIXED_SCALE
    from nn_lesson.lesson.story.names import HIDDEN_LABELS, INPUT_LABELS, INPUT_UNITS, OUTPUT_LABELS
    from nn_lesson.lesson.story.escape import terminal
    from nn_lesson.lesson.story.pages import lesson_pages
    from nn_lesson.lesson.story.worked import worked_weight
    log, c = record.log, record.config
    pages = lesson_pages(record)
    rows = page_rows(record, len(pages))
    story = [i for i, page in enumerate(pages) if page.title[:2].isdigit() and int(page.title[:2]) <= 11]
    heldout = record.held_out if record.heldout is not None else None
    return {
        "kind": "lesson", "steps": len(log), "step": log.step.tolist(), "epoch": log.epoch.tolist() if len(log) else [],
        "loss": _tolist(log.loss) if len(log) else [],
        "train_loss": _tolist(record.train.loss_by_step[1:]),
        # before any step: the loss on all training students under the starting weights (pages 01-03's moment)
        "train_loss_start": _finite(float(record.train.loss_by_step[0])),
        "heldout_loss": _tolist(record.heldout.loss_by_step[1:]) if record.heldout is not None else None,
        "config": {"lr": c.lr, "seed": c.seed, "loss": c.loss, "activation": c.activation,
                   "batch_size": c.batch_size, "init": c.init, "epochs": c.epochs},
        "labels": {"inputs": list(INPUT_LABELS), "hidden": list(HIDDEN_LABELS), "outputs": list(OUTPUT_LABELS)},
        "units": list(INPUT_UNITS),
        "params": {p.name: list(p.shape) for p in log.params},
        # One scale for every run and for the Images dashboard's diagrams, so that two runs compare.
        "scale": FIXED_SCALE,
        # The title as plain, inert text (the tab sets it as text): a page title is markdown with a student's name
        # escaped as character references, which shown as text would read "&#60;img …" instead of the name.
        "pages": [{"title": terminal(page.title), "moment": page_moment(page.title), "html": markdown_to_safe_html(page.story),
                   "deep_html": markdown_to_safe_html(page.deep) if page.deep else "", "row": row,
                   "worked": list(worked_weight(log[row])) if _is_learns_page(page.title) and len(log) else None}
                  for page, row in zip(pages, rows)],
        "story": story,
        "students": {"names": list(record.names), "features": _tolist(record.training.features),
                     "labels": record.training.labels.tolist(),
                     "heldout_names": list(record.heldout_names) if heldout is not None else []},
        "heldout": heldout_view(record),
        "stopped": record.stopped,
        "decision_map": True,
    }


def _is_learns_page(title: str) -> bool:
    """Pages 05, 07 and 09: the network learns from the step's students (they work one weight by hand)."""
    return title[:2] in ("05", "07", "09")


def _is_meets_page(title: str) -> bool:
    return title[:2] in ("04", "06", "08")


def _student_losses(record, outputs, labels):
    """Each student's own loss for these outputs, as the run's loss defines it."""
    import torch
    from nn_lesson.lesson.run.settings import loss_targets
    with torch.no_grad():
        if record.config.loss == "ce":
            return torch.nn.functional.cross_entropy(outputs, labels.long(), reduction="none")
        return ((outputs - loss_targets(record.config, labels.long())) ** 2).mean(-1)


def _moved(params: dict, top: int = MOVED_LINES) -> list[list]:
    """[[parameter, row, column, Δw], ...] for the drawn weights (not the biases) that moved most, largest first.

    Equal moves are treated alike: under cross-entropy over two outputs the PASS and FAIL rows of the output
    weights move by equal and opposite amounts, equal up to float rounding, so every move within TIED of the
    last one kept is kept too. A weight that did not move at all is never "moved most"."""
    moves = []
    for name, p in params.items():
        if name.endswith(".weight"):
            for i, row in enumerate(p["update"]):
                moves += [[name, i, j, d] for j, d in enumerate(row) if d]   # None (not finite) and 0 are no moves
    moves.sort(key=lambda m: -abs(m[3]))
    if len(moves) <= top:
        return moves
    floor = abs(moves[top - 1][3]) * (1 - TIED)
    return [m for m in moves if abs(m[3]) >= floor]


def _lesson_step(loaded: dict, row: int) -> dict:
    import torch
    from torch.func import functional_call
    record, log = _private(loaded["record"]), loaded["log"]
    snap = log[row]
    lr = loaded["lr"][row]
    params = {}
    for name in log.param_names:
        before, grad, after = snap.before[name], snap.grads[name], snap.after[name]
        params[name] = {"before": _tolist(before), "grad": _tolist(grad), "minus_lr_grad": _tolist(-lr * grad),
                        "after": _tolist(after), "update": _tolist(after - before)}
    outputs = snap.outputs
    conf = record.confidences(outputs)
    targets = snap.targets
    labels = targets.argmax(-1) if targets.dim() == 2 else targets
    each = _student_losses(record, outputs, labels)
    with torch.no_grad():  # the same students through the weights after the step
        outputs_after = functional_call(record.model, snap.after, (snap.inputs,))
    each_after = _student_losses(record, outputs_after, labels)
    conf_after = record.confidences(outputs_after)
    names = record.students_of(row)
    samples = snap.samples.tolist() if snap.samples is not None else []
    raw = record.training.features
    students = [{"name": names[i] if i < len(names) else f"#{i}", "target": record.label(labels[i]),
                 "pass": _finite(float(conf[i, 0])), "fail": _finite(float(conf[i, 1])),
                 "loss": _finite(float(each[i])), "loss_after": _finite(float(each_after[i])),
                 "pass_after": _finite(float(conf_after[i, 0])), "fail_after": _finite(float(conf_after[i, 1])),
                 "raw": _tolist(raw[samples[i]]) if i < len(samples) and samples[i] >= 0 else None}
                for i in range(len(outputs))]
    return {
        "kind": "lesson", "row": row, "step": snap.step, "epoch": snap.epoch, "loss": _finite(snap.loss), "lr": lr,
        "loss_after": _finite(float(each_after.mean())) if len(each_after) else None,
        "params": params, "students": students, "moved": _moved(params),
        "inputs": _tolist(snap.inputs), "hidden": _tolist(snap.activations.get("hidden_act", snap.inputs[:, :0])),
        "confidences": _tolist(conf),
    }


# ---- any other model (the bridge, your own): layers as blocks with summary numbers ----
def _summary(t) -> dict:
    t = t.double().flatten()
    if not t.numel():
        return {}
    return {"mean": _finite(float(t.mean())), "std": _finite(float(t.std(correction=0))),
            "norm": _finite(float(t.norm())), "min": _finite(float(t.min())), "max": _finite(float(t.max()))}


def layers_of(log) -> list[dict]:
    """The model's layers as the log names them, in the order the forward met them: each module path with its
    parameters (name, shape) and whether its output (activation) was recorded."""
    order: dict[str, dict] = {}
    for layer in log.layers:
        order.setdefault(layer, {"name": layer, "params": [], "output": True})
    for p in log.params:
        module, _, _ = p.name.rpartition(".")
        order.setdefault(module, {"name": module, "params": [], "output": False})["params"].append(
            {"name": p.name, "shape": list(p.shape)})
    return list(order.values())


KIND_MESSAGES = {
    "bridge": "bridge run: the digits MLP; each layer is a block with the mean, std, norm, min and max of its "
              "weights, gradients and update, and of its output",
    "model": "your model (a SnapshotLog written with write_tensorboard): each layer, named by its module path, is "
             "a block with the mean, std, norm, min and max of its weights, gradients and update, and of its output",
}


def _model_run(log, kind: str) -> dict:
    return {
        "kind": kind, "steps": len(log), "step": log.step.tolist(), "epoch": log.epoch.tolist() if len(log) else [],
        "loss": _tolist(log.loss) if len(log) and log.has("loss") else [],
        "params": {p.name: list(p.shape) for p in log.params}, "layers": layers_of(log),
        "message": KIND_MESSAGES[kind],
    }


def _model_step(log, row: int) -> dict:
    snap = log[row]
    blocks = []
    for layer in layers_of(log):
        parts = {}
        for p in layer["params"]:
            short = p["name"][len(layer["name"]) + 1:] if layer["name"] else p["name"]
            if p["name"] in snap.after:
                for what, t in ((short, snap.before[p["name"]]), (f"{short} gradient", snap.grads[p["name"]]),
                                (f"{short} update", snap.update[p["name"]])):
                    parts[what] = {**_summary(t), "shape": list(t.shape)}
            else:  # a statistics-only log: the recorded statistics themselves
                for key, stats in snap.stats.items():
                    if key.startswith(p["name"] + ":"):
                        parts[f"{short} {key.split(':', 1)[1]}"] = {s: _finite(v) for s, v in stats.items() if s != "hist"}
        if layer["output"] and layer["name"] in snap.activations:
            out = snap.activations[layer["name"]]
            parts["output"] = {**_summary(out), "shape": list(out.shape)}
            if layer["name"] in snap.act_grads:
                grad = snap.act_grads[layer["name"]]
                parts["output gradient"] = {**_summary(grad), "shape": list(grad.shape)}
        shape = layer["params"][0]["shape"] if layer["params"] else []
        blocks.append({"name": layer["name"] or "(model)", "shape": shape, "summary": parts})
    return {"kind": "model", "row": row, "step": snap.step, "epoch": snap.epoch,
            "loss": _finite(snap.loss) if snap.loss is not None else None, "blocks": blocks}
