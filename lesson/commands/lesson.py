"""nn-lesson: train the lesson with the Recorder attached, write the run, print the pages; or print one
step of a saved run (--step). Arguments arrive parsed and checked by lesson.cli."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from nn_lesson.data import DataError, load_students
from nn_lesson.lesson.commands.claim import run_folder
from nn_lesson.lesson.run.folder import RunClaim
from nn_lesson.lesson.run.settings import LessonConfig, check_steps
from nn_lesson.lesson.run.stopping import Stopped, exit_code, signals_deferred, stopping_by_signal
from nn_lesson.lesson.story.escape import inert


def lesson_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.step is not None or args.snapshot is not None:
        return show_step(parser, args)
    from nn_lesson.hooks.threads import use_threads
    use_threads(3 * 4 + 4 + 4 * 2 + 2, args.threads)  # the 3-4-2 net's parameters: 1 thread unless --threads
    config = LessonConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                          init=args.init, activation=args.activation, loss=args.loss, shuffle=args.shuffle)
    try:
        students = load_students(args.data)
    except DataError as err:
        print(f"nn-lesson: error: {inert(str(err))}", file=sys.stderr)  # one line: file, row, column, what is wrong
        return 2
    if config.batch_size > len(students.training()):
        parser.error(f"argument --batch-size: {config.batch_size} is larger than the "
                     f"{len(students.training())} training students")
    too_long = check_steps(config.epochs, config.batch_size, len(students.training()))
    if too_long:
        parser.error(f"argument --epochs: {too_long}")
    if args.serve and args.port is not None:
        from nn_lesson.lesson.board.serve import port_is_free
        if not port_is_free(args.port):
            parser.error(f"argument --port: 127.0.0.1:{args.port} is already in use; choose another port, or leave "
                         "--port out for a free one")
    # The heavy imports now, while a signal still simply ends the process (nothing claimed yet).
    import nn_lesson.lesson.board.lesson_run  # noqa: F401
    import nn_lesson.lesson.run.train  # noqa: F401
    with stopping_by_signal():
        claim = run_folder(parser, args, config.run_name())
        try:
            return train_and_write(args, config, students, claim)
        except Stopped as err:  # before training began, or while the lesson was printed after writing
            claim.release()
            print(f"nn-lesson: stopped by {err}", file=sys.stderr)
            return exit_code(err)


def train_and_write(args: argparse.Namespace, config: LessonConfig, students, claim: RunClaim) -> int:
    """Train with the Recorder attached, write the run (signals deferred while writing), print the pages."""
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE
    from nn_lesson.lesson.run.train import Diverged, train
    from nn_lesson.lesson.story.pages import lesson_pages

    every, last_print = max(1, config.epochs // 10), [time.monotonic()]

    def progress(epoch: int, loss: float) -> None:
        """A tenth of the epochs at a time, and at least every 5 s on long runs."""
        now = time.monotonic()
        due = epoch == 0 or (epoch + 1) % every == 0 or epoch + 1 == config.epochs or now - last_print[0] > 5
        if not args.quiet and due:
            last_print[0] = now
            print(f"epoch {epoch + 1:>4}/{config.epochs}  mean loss of the epoch's steps {loss:.4f}", flush=True)

    if not args.quiet:
        print(f"training on {len(students.training())} students for {config.epochs} epochs "
              f"(Ctrl-C stops early and keeps what was recorded)", flush=True)
    code, interrupted = 0, None
    try:
        record = train(config, students, on_epoch=progress)
    except Diverged as err:
        record, code = err.record, 3
        print(f"nn-lesson: {err}", file=sys.stderr)
    except KeyboardInterrupt as err:
        record, code, interrupted = getattr(err, "record", None), exit_code(err), err

    # A signal now stops us after the run is complete, not halfway; once stopped by one, any later is only noted.
    with signals_deferred(then_raise=interrupted is None) as deferred:
        if interrupted is not None:  # said inside the block: a second signal cannot cut the writing short
            if record is None:
                claim.release()
                print("nn-lesson: stopped before training began; nothing written", file=sys.stderr)
                return code
            print(f"nn-lesson: stopped by {interrupted} after {len(record.log)} steps; writing what was captured",
                  file=sys.stderr, flush=True)
        try:
            path = write_run(claim, lesson_files(record))
        except OSError as err:
            return save_elsewhere(record, claim, err)
    if deferred.signum:
        print(f"nn-lesson: stopped by {signal.Signals(deferred.signum).name} while writing; the run is complete",
              file=sys.stderr)
        code = code or 128 + deferred.signum
    if not args.quiet and not deferred.signum:
        for p in lesson_pages(record):
            print_page(p.title, p, args.deep)
    print(record.coverage)
    print(f"run: {path}")
    print(f"snapshots: {path / SNAPSHOT_FILE} ({len(record.log)} steps)")
    from nn_lesson.lesson.board.serve import view_hint
    if not args.serve:  # under --serve the address printed next is the way in
        print(f"view it:   {view_hint(args.logdir)}  (then open the Lesson tab)")
    if args.serve and not deferred.signum:
        return serve(args.logdir, args.port) or code
    return code


def lesson_files(record):
    """What a lesson run's folder holds: the run record's file and its TensorBoard events."""
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.lesson_run import write_lesson_tensorboard
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE

    def fill(folder: Path) -> None:
        record.save(folder / SNAPSHOT_FILE)
        with EventWriter(folder) as events:
            write_lesson_tensorboard(events, record)
    return fill


def save_elsewhere(record, claim: RunClaim, err: OSError) -> int:
    """Writing the run failed (disk full, read-only): keep the snapshots in a temporary folder and say where."""
    import tempfile
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE
    where = f"cannot write the run to {claim.target} ({err.strerror or err})"
    try:
        kept = Path(tempfile.mkdtemp(prefix="nn-lesson-unsaved-")) / SNAPSHOT_FILE
        record.save(kept)
    except OSError as again:
        print(f"nn-lesson: error: {where}; saving it to a temporary folder failed too ({again.strerror}); "
              "nothing was kept", file=sys.stderr)
        return 1
    print(f"nn-lesson: error: {where}; its snapshots and evaluations were saved to {kept} "
          f"(nn-lesson --step N --snapshot {kept} reads them)", file=sys.stderr)
    return 1


def serve_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """nn-lesson serve: TensorBoard on the runs that exist, nothing trained or written."""
    logdir = args.logdir
    if not logdir.is_dir():
        parser.error(f"argument --logdir: {logdir} is not a folder of runs; `nn-lesson` writes one there first")
    if not any(p.is_dir() and not p.name.startswith(".") for p in logdir.iterdir()):
        parser.error(f"argument --logdir: {logdir} holds no runs yet; `nn-lesson` trains one there")
    if args.port is not None:
        from nn_lesson.lesson.board.serve import port_is_free
        if not port_is_free(args.port):
            parser.error(f"argument --port: 127.0.0.1:{args.port} is already in use; choose another port, or leave "
                         "--port out for a free one")
    with stopping_by_signal():  # SIGTERM as Ctrl-C: the TensorBoard we started stops with us
        return serve(logdir, args.port)


def serve(logdir: Path, port: int | None) -> int:
    from nn_lesson.lesson.board.serve import start_tensorboard, token_address
    try:
        proc, url = start_tensorboard(logdir, port, announce=False)
    except RuntimeError as err:
        print(f"nn-lesson: {err}", file=sys.stderr)
        return 1
    # One address: the Lesson tab, carrying the "+ run" token after '#' (never sent to a server; keep it to yourself)
    print(f"TensorBoard: {token_address(url, proc.lesson_token)}  (the Lesson tab; \"+ run\" works from this "
          "address; Ctrl-C stops it)", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the server we started stops with us
        proc.terminate()
        proc.wait(timeout=10)
        return exit_code(err) if isinstance(err, Stopped) and err.signum != signal.SIGINT else 0
    return 0


def show_step(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print step N of a saved run: what the network met and how it learned from it."""
    if args.snapshot is None or args.step is None:
        parser.error("--step N and --snapshot PATH go together")
    from nn_lesson.hooks import SnapshotFileError
    from nn_lesson.lesson.run.record import RunRecord, run_file
    from nn_lesson.lesson.story.step_pages import learns, meets

    path = run_file(args.snapshot)
    try:
        record = RunRecord.load(path)
    except SnapshotFileError as err:
        parser.error(str(err))
    if len(record.log) == 0:
        parser.error(f"argument --step: {path} holds no steps (its run stopped before the first one)")
    if not 0 <= args.step < len(record.log):
        parser.error(f"argument --step: {path} has steps 0..{len(record.log) - 1}, not {args.step}")
    for p in (meets(record, args.step), learns(record, args.step)):
        print_page(f"step {args.step}: {p.title.split(' ', 1)[1]}", p, args.deep)  # "04 the network…" → "step N: …"
    return 0


def print_page(title: str, p, deep: bool) -> None:
    """The story of a page; with --deep, what is under its hood after it."""
    from nn_lesson.lesson.story.terminal import page, under_the_hood
    print(page(title, p.story))
    if deep and p.deep:
        print(under_the_hood(p.deep))
