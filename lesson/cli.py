"""nn-lesson: train the lesson's network with every step recorded, and write it for TensorBoard.

Run `nn-lesson --help`. Exit codes: 0 done, 2 bad input or arguments, 3 training diverged,
130 interrupted (what was captured is still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data import DataError, load_students
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
  tensorboard --logdir runs              then open the printed address
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


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
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = lesson_parser()
    args = parser.parse_args(argv)
    config = LessonConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                          init=args.init, activation=args.activation, loss=args.loss, shuffle=args.shuffle)
    try:
        check_logdir(args.logdir)
        target = choose_run_dir(args.logdir, args.name, f"lr{config.lr:g}_{config.loss}", args.overwrite)
        students = load_students(args.data)
        if config.batch_size > len(students.training()):
            parser.error(f"argument --batch-size: {config.batch_size} is larger than the "
                         f"{len(students.training())} training students")
    except (DataError, RunDirError) as err:
        parser.error(str(err))

    from lesson.train import Diverged, train  # torch-heavy imports after the arguments are known good
    from lesson.write_run import SNAPSHOT_FILE, write_run

    code = 0
    try:
        run = train(config, students)
    except Diverged as err:
        run, code = err.run, 3
        print(f"nn-lesson: {err}", file=sys.stderr)
    except KeyboardInterrupt as err:
        run, code = err.run, 130
        print(f"nn-lesson: interrupted after {len(run.log)} steps; writing what was captured", file=sys.stderr)
    path = write_run(run, target)
    print(f"run: {path}")
    print(f"snapshots: {path / SNAPSHOT_FILE} ({len(run.log)} steps)")
    print(f"view it:   tensorboard --logdir {args.logdir}")
    return code
