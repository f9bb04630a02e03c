"""nn-lesson: train the lesson's network with every step recorded, and write it for TensorBoard.

Run `nn-lesson --help`. Exit codes: 0 done, 2 bad input or arguments, 3 training diverged,
130 interrupted (what was captured is still written).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from data import DataError, load_students
from lesson.cli_args import positive_float, positive_int
from lesson.config import INITS, LOSSES, LessonConfig
from lesson.run_dir import RunDirError, check_logdir, choose_run_dir
from models import ACTIVATIONS

EXAMPLES = """\
examples:
  nn-lesson                              the lesson: lr 0.5, cross-entropy, the lesson's starting weights
  nn-lesson --loss mse --name seed-mse   the seed lesson's two sigmoids + MSE, to compare with the default
  nn-lesson --lr 0.05 --epochs 200       a slower learner
  nn-lesson --data my_class.csv          your own students (columns: name,hours_studied,hours_slept,
                                         previous_score,label[,split]; label PASS/FAIL or 1/0)
  nn-lesson bridge --optimizer momentum  the same hooks on real digits, DataLoader and all (needs the
                                         'bridge' extra: pip install 'nn-lesson[bridge]'); see bridge --help
  tensorboard --logdir runs              then open the printed address
"""


def lesson_parser() -> argparse.ArgumentParser:
    d = LessonConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson",
        description="Neural Network Training, on real PyTorch: a 3-4-2 network learns whether a student "
                    "passes, every step recorded by hooks and written to TensorBoard.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=positive_float, default=d.lr, metavar="LR", help=f"learning rate (default: {d.lr})")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N",
                   help=f"passes over all training students (default: {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N",
                   help=f"students per step; 1 is the lesson's one-student-at-a-time (default: {d.batch_size})")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S", help=f"random seed (default: {d.seed})")
    p.add_argument("--init", choices=INITS, default=d.init,
                   help="starting weights: the lesson's own, or PyTorch's seeded random init (default: lesson)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation,
                   help=f"hidden layer activation (default: {d.activation})")
    p.add_argument("--loss", choices=LOSSES, default=d.loss,
                   help="ce: cross-entropy on two scores, softmax confidences; mse: the seed lesson's two "
                        "sigmoids with mean squared error (default: ce)")
    p.add_argument("--shuffle", action="store_true", help="shuffle students every epoch (default: CSV order)")
    p.add_argument("--data", type=Path, metavar="CSV", help="students CSV (default: the lesson's six + held-out)")
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    p.add_argument("--name", help="run folder name (default: time, lr and loss); an existing one is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name run")
    p.add_argument("--quiet", action="store_true", help="don't print the lesson's steps while it runs")
    p.add_argument("--step", type=int, metavar="N",
                   help="print step N of a saved run (with --snapshot) instead of training")
    p.add_argument("--snapshot", type=Path, metavar="PATH", help="a snapshots.npz, or a run folder holding one")
    p.add_argument("--serve", action="store_true",
                   help="after the run, start TensorBoard on 127.0.0.1 and print its address (Ctrl-C stops it)")
    p.add_argument("--port", type=positive_int, help="port for --serve (default: a free one)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bridge"]:
        from lesson.bridge_cli import bridge_main
        return bridge_main(argv[1:])
    parser = lesson_parser()
    args = parser.parse_args(argv)
    if args.step is not None or args.snapshot is not None:
        return show_step(parser, args)
    config = LessonConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                          init=args.init, activation=args.activation, loss=args.loss, shuffle=args.shuffle)
    try:
        check_logdir(args.logdir)
        target = choose_run_dir(args.logdir, args.name, f"lr{config.lr:g}_{config.loss}", args.overwrite)
    except RunDirError as err:
        parser.error(str(err))
    try:
        students = load_students(args.data)
    except DataError as err:
        print(f"nn-lesson: error: {err}", file=sys.stderr)  # one line: file, row, column, what is wrong
        return 2
    if config.batch_size > len(students.training()):
        parser.error(f"argument --batch-size: {config.batch_size} is larger than the "
                     f"{len(students.training())} training students")

    from lesson.train import Diverged, train  # torch-heavy imports after the arguments are known good
    from lesson.write_run import SNAPSHOT_FILE, write_run

    from lesson.story import lesson_steps
    from lesson.terminal import page
    from lesson.view import LessonView

    def progress(epoch: int, loss: float) -> None:
        every = max(1, config.epochs // 10)
        if not args.quiet and (epoch == 0 or (epoch + 1) % every == 0 or epoch + 1 == config.epochs):
            print(f"epoch {epoch + 1:>4}/{config.epochs}  mean loss of its steps {loss:.4f}", flush=True)

    # Ctrl-C must reach the loop as KeyboardInterrupt even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not args.quiet:
        print(f"training on {len(students.training())} students for {config.epochs} epochs "
              f"(Ctrl-C stops early and keeps what was recorded)", flush=True)
    code = 0
    try:
        run = train(config, students, on_epoch=progress)
    except Diverged as err:
        run, code = err.run, 3
        print(f"nn-lesson: {err}", file=sys.stderr)
    except KeyboardInterrupt as err:
        run, code = getattr(err, "run", None), 130
        if run is None:
            print("nn-lesson: interrupted before training began; nothing written", file=sys.stderr)
            return code
        print(f"nn-lesson: interrupted after {len(run.log)} steps; writing what was captured", file=sys.stderr)
    path = write_run(run, target)
    if not args.quiet:
        for title, markdown in lesson_steps(LessonView.of(run.log)):
            print(page(title, markdown))
    print(f"run: {path}")
    print(f"snapshots: {path / SNAPSHOT_FILE} ({len(run.log)} steps)")
    print(f"view it:   tensorboard --logdir {args.logdir} --samples_per_plugin images=100000")
    if args.serve:
        return serve(args.logdir, args.port) or code
    return code


def serve(logdir: Path, port: int | None) -> int:
    from lesson.serve import start_tensorboard
    try:
        proc, url = start_tensorboard(logdir, port)
    except RuntimeError as err:
        print(f"nn-lesson: {err}", file=sys.stderr)
        return 1
    print(f"TensorBoard: {url}  (Ctrl-C stops it)", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


def show_step(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Print step N of a saved run: what the network met and how it learned from it."""
    if args.snapshot is None or args.step is None:
        parser.error("--step N and --snapshot PATH go together")
    from hooks import SnapshotFileError, SnapshotLog
    from lesson.story import learns, meets
    from lesson.terminal import page
    from lesson.view import LessonView
    from lesson.write_run import SNAPSHOT_FILE

    path = args.snapshot / SNAPSHOT_FILE if args.snapshot.is_dir() else args.snapshot
    try:
        view = LessonView.of(SnapshotLog.load(path))
    except SnapshotFileError as err:
        parser.error(str(err))
    if not 0 <= args.step < len(view.log):
        parser.error(f"argument --step: {path} has steps 0..{len(view.log) - 1}, not {args.step}")
    for title, markdown in (meets(view, args.step), learns(view, args.step)):
        print(page(title.replace(title[:2], f"step {args.step}:", 1), markdown))
    return 0
