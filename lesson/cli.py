"""nn-lesson, nn-lesson lab and nn-lesson bridge: argument parsing only. Every argument is checked here
(argparse errors, exit 2) before any work; the commands' bodies are in lesson.commands.

Run `nn-lesson --help`, `nn-lesson lab --help` or `nn-lesson bridge --help`. Exit codes: 0 done, 2 bad input or arguments, 3 training diverged,
130/143 stopped by SIGINT/SIGTERM (what was captured is still written, as a complete run).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from nn_lesson.lesson.bridge.train import CNN_DEFAULT_LR, DEFAULT_POLICY, MODELS, OPTIMIZERS, BridgeConfig
from nn_lesson.lesson.run.values import (  # noqa: F401  (the value checks live beside the settings they check)
    FLOAT32_MAX, at_most, learning_rate, port, positive_float, positive_int, run_name, seed, threads, whole_number)
from nn_lesson.lesson.run.settings import INITS, LOSSES, LessonConfig
from nn_lesson.models import ACTIVATIONS

# The bridge's bounds: its MLP 64-hidden-10 keeps every 10th step in full by default, 64 × hidden × 4 bytes of
# weights, gradients and updates each; 4,096 hidden units is 1 MB a layer, and 10,000 epochs 230,000 steps.
MAX_HIDDEN = 4096
MAX_BRIDGE_EPOCHS = 10_000
# The CNN's: 8x8 images, so a layer's output is 64 × channels numbers an image. At the bounds (128 channels, 8
# blocks: 2.4M parameters) a full row is 231 MiB at batch 64 and a bare step 0.7 s on one core here (measured),
# so the default 20 epochs keep 9 full rows (~2 GiB) and train for about 5 minutes; the default net: 9 ms a step.
MAX_CHANNELS = 128
MAX_BLOCKS = 8


def add_run_folder_arguments(p: argparse.ArgumentParser, default_name: str) -> None:
    """--logdir, --name, --overwrite: the same for every command that writes a run."""
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    p.add_argument("--name", type=run_name, help=f"run folder name (default: {default_name}); an existing one is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name run")


EXAMPLES = """\
examples:
  nn-lesson                              the lesson: lr 0.5, cross-entropy, the lesson's starting weights
  nn-lesson --loss mse --name seed-mse   the original web lesson's two sigmoids + MSE, to compare
  nn-lesson --deep                       the same lesson, each page followed by what is under its hood
  nn-lesson --lr 0.05 --epochs 200       a slower learner
  nn-lesson --data my_class.csv          your own students (columns: name,hours_studied,hours_slept,
                                         previous_score,label[,split]; label PASS/FAIL or 1/0)
  nn-lesson lab --lr 0.01 0.5 5          three runs side by side and a page comparing them: too slow, good,
                                         overshoots (see lab --help)
  nn-lesson bridge --optimizer momentum  the same hooks on real digits, DataLoader and all (needs the
                                         'bridge' extra: pip install 'nn-lesson[bridge]'); see bridge --help
  nn-lesson bridge --model cnn           the second bridge: a small residual CNN with BatchNorm, seen
                                         as the picture of its health in the Lesson tab
  torchrun --nproc_per_node 2 -m nn_lesson bridge
                                         the bridge on two processes (DDP); rank 0 writes the run
  nn-lesson --serve                      the lesson, then TensorBoard on 127.0.0.1: open the printed
                                         address, which lands on the Lesson tab
  nn-lesson serve                        TensorBoard on the runs you already have, training nothing
  tensorboard --logdir runs --samples_per_plugin images=100000,text=100000
                                         TensorBoard on runs you already have (every step's diagram and
                                         table kept; TensorBoard keeps 10 of each otherwise)
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
                   help="ce: cross-entropy on two scores, softmax confidences; mse: the original web lesson's two "
                        "sigmoids with mean squared error (default: ce)")
    p.add_argument("--shuffle", action="store_true", help="shuffle students every epoch (default: CSV order)")
    p.add_argument("--data", type=Path, metavar="CSV", help="students CSV (default: the lesson's six + held-out)")
    add_run_folder_arguments(p, "lr, loss and activation, e.g. lr0.5-ce-sigmoid, numbered when repeated")
    p.add_argument("--quiet", action="store_true", help="don't print the lesson's pages after the run")
    p.add_argument("--deep", action="store_true",
                   help="print every page with its 'under the hood' section: each student's own gradient and the "
                        "straight-line prediction, the chain rule by hand with a finite-difference check, log-odds, "
                        "the straight-line baseline, float precision (default: the 11 short story pages only)")
    p.add_argument("--step", type=int, metavar="N",
                   help="print step N of a saved run (with --snapshot) instead of training")
    p.add_argument("--snapshot", type=Path, metavar="PATH", help="a snapshots.npz, or a run folder holding one")
    p.add_argument("--serve", action="store_true",
                   help="after the run, start TensorBoard on 127.0.0.1 and print its address (Ctrl-C stops it)")
    p.add_argument("--port", type=port, help="port for --serve (default: a free one)")
    p.add_argument("--threads", type=threads, metavar="N",
                   help="torch intra-op threads (default: 1 for models this small: a tiny model slows up to "
                        "10× when its threads compete with another busy process)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse and check the arguments, then hand them to the command (imported only now: it pulls in torch)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bridge"]:
        parser = bridge_parser()
        from nn_lesson.lesson.commands.bridge import bridge_command
        return bridge_command(parser, parser.parse_args(argv[1:]))
    if argv[:1] == ["serve"]:
        parser = serve_parser()
        from nn_lesson.lesson.commands.lesson import serve_command
        return serve_command(parser, parser.parse_args(argv[1:]))
    if argv[:1] == ["lab"]:
        parser = lab_parser()
        from nn_lesson.lesson.commands.lab import lab_command
        return lab_command(parser, parser.parse_args(argv[1:]))
    parser = lesson_parser()
    args = parser.parse_args(argv)
    from nn_lesson.lesson.commands.lesson import lesson_command
    return lesson_command(parser, args)


def bridge_parser() -> argparse.ArgumentParser:
    d = BridgeConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson bridge",
        description=textwrap.fill(
            "The bridge lesson: the same hooks and TensorBoard layout on a real data set (8x8 digits, shipped inside "
            "scikit-learn) with the training loop people actually write. --model cnn trains a small residual CNN "
            "with BatchNorm instead, kept as statistics of every step and every number of every 50th, and written "
            "as the Lesson tab's model view with pages on the rule weight_new = weight_old - lr x gradient at depth "
            "and on the net's health.", 100),
        epilog=BRIDGE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="mlp",
                   help="mlp: a 64-hidden-10 MLP (default); cnn: a residual CNN on 1x8x8 images (a conv stem, "
                        "--blocks residual blocks with BatchNorm, a linear head)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default: adam for the MLP, sgd for the CNN")
    p.add_argument("--lr", type=learning_rate,
                   help="learning rate (default: MLP sgd 0.3, momentum 0.05, adam 0.003; CNN "
                        + ", ".join(f"{k} {v:g}" for k, v in CNN_DEFAULT_LR.items()) + ")")
    p.add_argument("--epochs", type=at_most(MAX_BRIDGE_EPOCHS, "a bridge run's bound"), default=d.epochs, metavar="N",
                   help=f"default: {d.epochs}; at most {MAX_BRIDGE_EPOCHS:,}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N", help=f"default: {d.batch_size}")
    p.add_argument("--hidden", type=at_most(MAX_HIDDEN, "the bridge MLP's bound"), metavar="N",
                   help=f"the MLP's hidden units (default: {d.hidden}; at most {MAX_HIDDEN:,})")
    p.add_argument("--channels", type=at_most(MAX_CHANNELS, "the bridge CNN's bound"), metavar="N",
                   help=f"the CNN's channels (default: {d.channels}; at most {MAX_CHANNELS})")
    p.add_argument("--blocks", type=at_most(MAX_BLOCKS, "the bridge CNN's bound"), metavar="N",
                   help=f"the CNN's residual blocks (default: {d.blocks}; at most {MAX_BLOCKS})")
    p.add_argument("--no-batchnorm", action="store_true",
                   help="the CNN without its BatchNorm layers (its convolutions get biases instead): compare its "
                        "health with the default run's")
    p.add_argument("--seed", type=seed, default=d.seed, metavar="S", help=f"default: {d.seed}")
    p.add_argument("--policy",
                   help="what the Recorder keeps: full, every:K (every K-th step in full), stats or stats:K "
                        "(mean, std, norm, min, max, histogram per tensor), stats+every:K (statistics of every step "
                        f"and every K-th step in full; CNN only) (default: MLP {DEFAULT_POLICY['mlp']}, "
                        f"CNN {DEFAULT_POLICY['cnn']})")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--lightning", action="store_true",
                   help="also train the same run with a PyTorch Lightning Trainer (RecorderCallback) and add a page "
                        "comparing the two, row by row (needs pip install 'nn-lesson[lightning]')")
    p.add_argument("--every-rank", action="store_true",
                   help="under torchrun, every process writes its own run (NAME.rank<r>); by default only rank 0")
    add_run_folder_arguments(p, "bridge_<optimizer>, or bridge_cnn_<optimizer>[_nobn], numbered when repeated")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.add_argument("--threads", type=threads, metavar="N",
                   help="torch intra-op threads (default: 1 for models this small, under a million parameters: "
                        "a tiny model slows up to 10× when its threads compete with another busy process)")
    return p


BRIDGE_EXAMPLES = """\
examples:
  nn-lesson bridge                                   the MLP with Adam
  nn-lesson bridge --model cnn --name cnn            the residual CNN with BatchNorm, plain SGD
  nn-lesson bridge --model cnn --no-batchnorm --name cnn-no-bn
  nn-lesson bridge --model cnn --lr 5 --name cnn-lr-high
                                                     the same net unnormalised, and with too high a learning
                                                     rate: open the three in the Lesson tab and compare with vs
"""


LAB_EXAMPLE = """\
example:
  nn-lesson lab --lr 0.01 0.5 5          verdicts: too slow, good, overshoots (and lr 5, too high, ends
                                         with the lowest loss: the page tells with its epochs how)
"""


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nn-lesson serve",
        description="TensorBoard on 127.0.0.1 for the runs already in the log directory, training nothing: the "
                    "printed address opens on the Lesson tab (its newest lesson run; with none, the first run by "
                    "name). Ctrl-C stops it.")
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="the run folders to show (default: runs)")
    p.add_argument("--port", type=port, help="port (default: a free one)")
    return p


def lab_parser() -> argparse.ArgumentParser:
    d = LessonConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson lab",
        description="The learning-rate lab: train the lesson once per learning rate into one log directory "
                    "(runs NAME-lr<LR>-...), then write a page comparing them with numbers. Each run's verdict is "
                    "relative to the lab's own runs: too slow (ended 10x or more above the lab's lowest loss, "
                    "still above a tenth of its start), good, overshoots (the loss rose more than 1.5x over an "
                    "epoch, or ended above its start), diverged. Open TensorBoard on the log directory to see "
                    "them side by side.",
        epilog=LAB_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=learning_rate, nargs="+", action="append", required=True, metavar="LR",
                   help="learning rates to compare, e.g. --lr 0.01 0.5 5")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N", help=f"default: {d.epochs}")
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help="default: ce")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=d.activation, help="default: sigmoid")
    p.add_argument("--data", type=Path, metavar="CSV", help="students CSV (default: the lesson's)")
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    p.add_argument("--name", type=run_name, metavar="PREFIX",
                   help="the runs are PREFIX-lr<LR>-<loss>-<activation> and PREFIX-comparison, numbered when "
                        "a name is taken (default: lab)")
    return p


