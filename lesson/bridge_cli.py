"""nn-lesson bridge: the Recorder on scikit-learn's digits with a DataLoader, mini-batches and a real optimizer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lesson.bridge import OPTIMIZERS, BridgeConfig, MissingExtra
from lesson.cli_args import positive_float, positive_int
from lesson.run_dir import RunDirError, check_logdir, choose_run_dir


def bridge_parser() -> argparse.ArgumentParser:
    d = BridgeConfig()
    p = argparse.ArgumentParser(
        prog="nn-lesson bridge",
        description="The bridge lesson: the same hooks and TensorBoard layout on a real data set (8x8 digits, "
                    "shipped inside scikit-learn) with the training loop people actually write.")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="default: adam")
    p.add_argument("--lr", type=positive_float, help="learning rate (default: sgd 0.3, momentum 0.05, adam 0.003)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, metavar="N", help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="N", help=f"default: {d.batch_size}")
    p.add_argument("--hidden", type=positive_int, default=d.hidden, metavar="N", help=f"hidden units (default: {d.hidden})")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S", help=f"default: {d.seed}")
    p.add_argument("--policy", default=d.policy,
                   help="what the Recorder keeps: full, every:K (every K-th step in full), stats or stats:K "
                        f"(mean, std, norm, min, max, histogram per tensor) (default: {d.policy})")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--logdir", type=Path, default=Path("runs"), help="default: runs")
    p.add_argument("--name", help="run folder name (default: time and optimizer)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name run")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    return p


def bridge_main(argv: list[str]) -> int:
    parser = bridge_parser()
    args = parser.parse_args(argv)
    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("argument --device: CUDA is not available on this machine; use --device cpu")
    config = BridgeConfig(optimizer=args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                          hidden=args.hidden, seed=args.seed, policy=args.policy, device=args.device)
    try:
        config.capture_policy()
        check_logdir(args.logdir)
        target = choose_run_dir(args.logdir, args.name, f"bridge_{config.optimizer}", args.overwrite)
    except (ValueError, RunDirError) as err:
        parser.error(str(err))

    from lesson.bridge import train_bridge
    from lesson.bridge_tensorboard import write_bridge_tensorboard
    from lesson.run_dir import publish, staging_dir
    from lesson.tb_events import EventWriter

    def progress(epoch: int, train: float, held: float) -> None:
        if not args.quiet:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  accuracy: training {train:.1%}, held-out {held:.1%}",
                  flush=True)
    try:
        run = train_bridge(config, progress)
    except MissingExtra as err:
        print(f"nn-lesson bridge: error: {err}", file=sys.stderr)
        return 2
    staging = staging_dir(target)
    run.log.save(staging / "snapshots.npz")
    events = EventWriter(staging)
    try:
        write_bridge_tensorboard(events, run)
    finally:
        events.close()
    path = publish(staging, target)
    print(f"held-out accuracy {run.accuracy[-1]:.1%} after {config.epochs} epochs, {run.seconds:.1f} s of training, "
          f"{len(run.log)} steps recorded ({run.log.nbytes / max(1, len(run.log)):.0f} bytes per recorded step)")
    print(f"run: {path}\nview it: tensorboard --logdir {args.logdir}")
    return 0
