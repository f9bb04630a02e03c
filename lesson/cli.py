"""nn-lesson and nn-lesson bridge: the command line. Arguments are parsed and checked here, before anything
heavy is imported; the work is done by lesson.run, lesson.story, lesson.board and lesson.bridge.

Run `nn-lesson --help` or `nn-lesson bridge --help`. Exit codes: 0 done, 2 bad input or arguments, 3 training diverged,
130/143 stopped by SIGINT/SIGTERM (what was captured is still written, as a complete run).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from nn_lesson.data import DataError, load_students
from nn_lesson.lesson.bridge.train import OPTIMIZERS, BridgeConfig, MissingExtra
from nn_lesson.lesson.run.folder import RunClaim, RunDirError, check_name, claim_run
from nn_lesson.lesson.run.settings import INITS, LOSSES, LessonConfig
from nn_lesson.lesson.story.escape import inert
from nn_lesson.lesson.run.stopping import Stopped, exit_code, signals_deferred, stopping_by_signal
from nn_lesson.models import ACTIVATIONS

FLOAT32_MAX = 3.4028234663852886e38


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def learning_rate(text: str) -> float:
    """A positive learning rate that float32 weights can hold (above ~3.4e38 SGD's lr × grad overflows)."""
    value = positive_float(text)
    if value > FLOAT32_MAX:
        raise argparse.ArgumentTypeError(f"must be at most {FLOAT32_MAX:.3g} (the largest float32), got {text}")
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def seed(text: str) -> int:
    value = whole_number(text)
    if not -(2 ** 63) <= value < 2 ** 64:  # what torch.manual_seed accepts
        raise argparse.ArgumentTypeError(f"must be within -2**63 .. 2**64-1, got {text}")
    return value


def port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1..65535, got {text}")
    return value


def run_name(text: str) -> str:
    try:
        check_name(text)
    except RunDirError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_run_folder_arguments(p: argparse.ArgumentParser, default_name: str) -> None:
    """--logdir, --name, --overwrite: the same for every command that writes a run."""
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    p.add_argument("--name", type=run_name, help=f"run folder name (default: {default_name}); an existing one is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name run")


def run_folder(parser: argparse.ArgumentParser, args: argparse.Namespace, default_name: str) -> RunClaim:
    """Claim the new run's folder under --logdir before any training (argparse error, exit 2)."""
    try:
        return claim_run(args.logdir, args.name, default_name, args.overwrite)
    except RunDirError as err:
        parser.error(str(err))


EXAMPLES = """\
examples:
  nn-lesson                              the lesson: lr 0.5, cross-entropy, the lesson's starting weights
  nn-lesson --loss mse --name seed-mse   the seed lesson's two sigmoids + MSE, to compare with the default
  nn-lesson --lr 0.05 --epochs 200       a slower learner
  nn-lesson --data my_class.csv          your own students (columns: name,hours_studied,hours_slept,
                                         previous_score,label[,split]; label PASS/FAIL or 1/0)
  nn-lesson lab --lr 0.01 0.5 5          three runs side by side and a page comparing them: too slow, good,
                                         overshooting (see lab --help)
  nn-lesson bridge --optimizer momentum  the same hooks on real digits, DataLoader and all (needs the
                                         'bridge' extra: pip install 'nn-lesson[bridge]'); see bridge --help
  torchrun --nproc_per_node 2 -m nn_lesson bridge
                                         the bridge on two processes (DDP); rank 0 writes the run
  tensorboard --logdir runs              then open the printed address
"""


def lesson_parser() -> argparse.ArgumentParser:
    d = LessonConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson",
        description="Neural Network Training, on real PyTorch: a 3-4-2 network learns whether a student "
                    "passes, every step recorded by hooks and written to TensorBoard.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=learning_rate, default=d.lr, metavar="LR", help=f"learning rate (default: {d.lr})")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N",
                   help=f"passes over all training students (default: {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N",
                   help=f"students per step; 1 is the lesson's one-student-at-a-time (default: {d.batch_size})")
    p.add_argument("--seed", type=seed, default=d.seed, metavar="S", help=f"random seed (default: {d.seed})")
    p.add_argument("--init", choices=INITS, default=d.init,
                   help="starting weights: the lesson's own, or PyTorch's seeded random init (default: lesson)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation,
                   help=f"hidden layer activation (default: {d.activation})")
    p.add_argument("--loss", choices=LOSSES, default=d.loss,
                   help="ce: cross-entropy on two scores, softmax confidences; mse: the seed lesson's two "
                        "sigmoids with mean squared error (default: ce)")
    p.add_argument("--shuffle", action="store_true", help="shuffle students every epoch (default: CSV order)")
    p.add_argument("--data", type=Path, metavar="CSV", help="students CSV (default: the lesson's six + held-out)")
    add_run_folder_arguments(p, "lr, loss and activation, e.g. lr0.5-ce-sigmoid, numbered when repeated")
    p.add_argument("--quiet", action="store_true", help="don't print the lesson's steps while it runs")
    p.add_argument("--step", type=int, metavar="N",
                   help="print step N of a saved run (with --snapshot) instead of training")
    p.add_argument("--snapshot", type=Path, metavar="PATH", help="a snapshots.npz, or a run folder holding one")
    p.add_argument("--serve", action="store_true",
                   help="after the run, start TensorBoard on 127.0.0.1 and print its address (Ctrl-C stops it)")
    p.add_argument("--port", type=port, help="port for --serve (default: a free one)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch intra-op threads (default: 1 for models this small: a tiny model slows up to "
                        "10× when its threads compete with another busy process)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bridge"]:
        return bridge_main(argv[1:])
    if argv[:1] == ["lab"]:
        return lab_main(argv[1:])
    parser = lesson_parser()
    args = parser.parse_args(argv)
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
    # The heavy imports now, while a signal still simply ends the process (nothing claimed yet).
    import nn_lesson.lesson.board.lesson_run  # noqa: F401
    import nn_lesson.lesson.run.train  # noqa: F401
    with stopping_by_signal():
        claim = run_folder(parser, args, f"lr{config.lr:g}-{config.loss}-{config.activation}")
        try:
            return train_and_write(args, config, students, claim)
        except Stopped as err:  # before training began, or while the lesson was printed after writing
            claim.release()
            print(f"nn-lesson: stopped by {err}", file=sys.stderr)
            return exit_code(err)


def train_and_write(args: argparse.Namespace, config: LessonConfig, students, claim: RunClaim) -> int:
    # torch-heavy imports after the arguments are known good
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.lesson_run import write_lesson_tensorboard
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE
    from nn_lesson.lesson.run.train import Diverged, train
    from nn_lesson.lesson.story.pages import lesson_steps
    from nn_lesson.lesson.story.terminal import page

    def progress(epoch: int, loss: float) -> None:
        every = max(1, config.epochs // 10)
        if not args.quiet and (epoch == 0 or (epoch + 1) % every == 0 or epoch + 1 == config.epochs):
            print(f"epoch {epoch + 1:>4}/{config.epochs}  mean loss of its steps {loss:.4f}", flush=True)

    if not args.quiet:
        print(f"training on {len(students.training())} students for {config.epochs} epochs "
              f"(Ctrl-C stops early and keeps what was recorded)", flush=True)
    code = 0
    try:
        record = train(config, students, on_epoch=progress)
    except Diverged as err:
        record, code = err.record, 3
        print(f"nn-lesson: {err}", file=sys.stderr)
    except KeyboardInterrupt as err:
        record, code = getattr(err, "record", None), exit_code(err)
        if record is None:
            claim.release()
            print("nn-lesson: stopped before training began; nothing written", file=sys.stderr)
            return code
        print(f"nn-lesson: stopped by {err} after {len(record.log)} steps; writing what was captured",
              file=sys.stderr, flush=True)

    def fill(folder: Path) -> None:
        record.save(folder / SNAPSHOT_FILE)
        with EventWriter(folder) as events:
            write_lesson_tensorboard(events, record)
    with signals_deferred() as deferred:  # a signal now stops us after the run is complete, not halfway
        try:
            path = write_run(claim, fill)
        except OSError as err:
            return save_elsewhere(record, claim, err)
    if deferred.signum:
        print(f"nn-lesson: stopped by {signal.Signals(deferred.signum).name} while writing; the run is complete",
              file=sys.stderr)
        code = code or 128 + deferred.signum
    if not args.quiet and not deferred.signum:
        for title, markdown in lesson_steps(record):
            print(page(title, markdown))
    print(record.coverage)
    print(f"run: {path}")
    print(f"snapshots: {path / SNAPSHOT_FILE} ({len(record.log)} steps)")
    print(f"view it:   tensorboard --logdir {args.logdir} --samples_per_plugin images=100000")
    if args.serve and not deferred.signum:
        return serve(args.logdir, args.port) or code
    return code


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


def serve(logdir: Path, port: int | None) -> int:
    from nn_lesson.lesson.board.serve import start_tensorboard
    try:
        proc, url = start_tensorboard(logdir, port)
    except RuntimeError as err:
        print(f"nn-lesson: {err}", file=sys.stderr)
        return 1
    print(f"TensorBoard: {url}  (Ctrl-C stops it)", flush=True)
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
    from nn_lesson.lesson.story.pages import learns, meets
    from nn_lesson.lesson.story.terminal import page

    path = run_file(args.snapshot)
    try:
        record = RunRecord.load(path)
    except SnapshotFileError as err:
        parser.error(str(err))
    if len(record.log) == 0:
        parser.error(f"argument --step: {path} holds no steps (its run stopped before the first one)")
    if not 0 <= args.step < len(record.log):
        parser.error(f"argument --step: {path} has steps 0..{len(record.log) - 1}, not {args.step}")
    for title, markdown in (meets(record, args.step), learns(record, args.step)):
        print(page(f"step {args.step}: {title.split(' ', 1)[1]}", markdown))  # "04 the network…" → "step N: the network…"
    return 0


def bridge_parser() -> argparse.ArgumentParser:
    d = BridgeConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson bridge",
        description="The bridge lesson: the same hooks and TensorBoard layout on a real data set (8x8 digits, "
                    "shipped inside scikit-learn) with the training loop people actually write.")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="default: adam")
    p.add_argument("--lr", type=learning_rate, help="learning rate (default: sgd 0.3, momentum 0.05, adam 0.003)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N", help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N", help=f"default: {d.batch_size}")
    p.add_argument("--hidden", type=positive_int, default=d.hidden, metavar="N", help=f"hidden units (default: {d.hidden})")
    p.add_argument("--seed", type=seed, default=d.seed, metavar="S", help=f"default: {d.seed}")
    p.add_argument("--policy", default=d.policy,
                   help="what the Recorder keeps: full, every:K (every K-th step in full), stats or stats:K "
                        f"(mean, std, norm, min, max, histogram per tensor) (default: {d.policy})")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--every-rank", action="store_true",
                   help="under torchrun, every process writes its own run (NAME.rank<r>); by default only rank 0")
    add_run_folder_arguments(p, "time and optimizer")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch intra-op threads (default: 1 for models this small, under a million parameters: "
                        "a tiny model slows up to 10× when its threads compete with another busy process)")
    return p


def bridge_main(argv: list[str]) -> int:
    parser = bridge_parser()
    args = parser.parse_args(argv)
    import torch
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"argument --device: {args.device!r} is not a device; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device: CUDA is not available on this machine; use --device cpu")
    from nn_lesson.hooks.threads import use_threads
    use_threads(64 * args.hidden + args.hidden + args.hidden * 10 + 10, args.threads)  # the MLP 64-hidden-10
    config = BridgeConfig(optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                          hidden=args.hidden, seed=args.seed, policy=args.policy, device=args.device)
    try:
        config.capture_policy()
    except ValueError as err:
        parser.error(f"argument --policy: {err}")
    # Under torchrun every process runs this; by default only rank 0 writes (the gradients it recorded are
    # the all-reduced ones every rank used). --every-rank keeps each rank's own log too, as NAME.rank<r>.
    rank = int(os.environ.get("RANK", "0"))
    writes = rank == 0 or args.every_rank
    if args.name is not None and rank > 0:
        args.name = f"{args.name}.rank{rank}"
    claim = run_folder(parser, args, f"bridge_{config.optimizer}" + (f".rank{rank}" if rank else "")) if writes else None

    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.bridge.board import write_bridge_tensorboard
    from nn_lesson.lesson.bridge.train import train_bridge
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE

    def progress(epoch: int, train: float, held: float) -> None:
        if not args.quiet and rank == 0:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  accuracy: training {train:.1%}, held-out {held:.1%}",
                  flush=True)
    try:
        run = train_bridge(config, progress)
    except MissingExtra as err:
        print(f"nn-lesson bridge: error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    if claim is None:
        return 0

    def fill(folder: Path) -> None:
        run.save(folder / SNAPSHOT_FILE)
        with EventWriter(folder) as events:
            write_bridge_tensorboard(events, run)
    path = write_run(claim, fill)
    print(f"held-out accuracy {run.accuracy[-1]:.1%} after {config.epochs} epochs, {run.seconds:.1f} s of training, "
          f"{len(run.log)} steps recorded ({run.log.nbytes / max(1, len(run.log)):.0f} bytes per recorded step)")
    print(run.coverage)
    print(f"run: {path}\nview it: tensorboard --logdir {args.logdir}")
    return 0


def lab_parser() -> argparse.ArgumentParser:
    d = LessonConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson lab",
        description="The learning-rate lab: train the lesson once per learning rate into one log directory "
                    "(runs NAME-lr<LR>-...), then write a page comparing them with numbers: too slow, good, "
                    "overshooting, diverged. Open TensorBoard on the log directory to see them side by side.")
    p.add_argument("--lr", type=learning_rate, nargs="+", required=True, metavar="LR",
                   help="learning rates to compare, e.g. --lr 0.01 0.5 5")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N", help=f"default: {d.epochs}")
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help="default: ce")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation, help="default: sigmoid")
    p.add_argument("--data", type=Path, metavar="CSV", help="students CSV (default: the lesson's)")
    add_run_folder_arguments(p, "lab")
    return p


def lab_main(argv: list[str]) -> int:
    parser = lab_parser()
    args = parser.parse_args(argv)
    try:
        students = load_students(args.data)
    except DataError as err:
        print(f"nn-lesson lab: error: {inert(str(err))}", file=sys.stderr)
        return 2
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.lesson_run import write_lesson_tensorboard
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE
    from nn_lesson.lesson.run.train import Diverged, train
    from nn_lesson.lesson.story.lab import lab_page
    from nn_lesson.lesson.story.terminal import page

    prefix = args.name or "lab"
    records = []
    with stopping_by_signal():
        try:
            for lr in args.lr:
                config = LessonConfig(lr=lr, epochs=args.epochs, loss=args.loss, activation=args.activation)
                claim = run_folder(parser, argparse.Namespace(logdir=args.logdir, name=None, overwrite=False),
                                   f"{prefix}-lr{lr:g}-{config.loss}-{config.activation}")
                try:
                    record = train(config, students)
                except Diverged as err:
                    record = err.record
                except BaseException:
                    claim.release()
                    raise

                def fill(folder: Path, record=record) -> None:
                    record.save(folder / SNAPSHOT_FILE)
                    with EventWriter(folder) as events:
                        write_lesson_tensorboard(events, record)
                with signals_deferred():
                    path = write_run(claim, fill)
                records.append(record)
                print(f"lr {lr:g}: {path}", flush=True)
        except Stopped as err:
            print(f"nn-lesson lab: stopped by {err}; the runs above are complete", file=sys.stderr)
            return exit_code(err)
        title, markdown = lab_page(records)
        summary = run_folder(parser, argparse.Namespace(logdir=args.logdir, name=None, overwrite=False),
                             f"{prefix}-comparison")

        def fill_page(folder: Path) -> None:
            with EventWriter(folder) as events:
                events.text(f"lab/{title}", markdown)
        with signals_deferred():
            path = write_run(summary, fill_page)
    print(page(title, markdown))
    print(f"comparison: {path}\nview it: tensorboard --logdir {args.logdir}")
    return 0
