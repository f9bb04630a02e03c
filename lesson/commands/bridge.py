"""nn-lesson bridge: the Recorder on scikit-learn's digits, alone or under torchrun (rank 0 writes unless
--every-rank). Arguments arrive parsed and checked by lesson.cli."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nn_lesson.lesson.bridge.train import BridgeConfig, MissingExtra
from nn_lesson.lesson.commands.claim import run_folder
from nn_lesson.lesson.run.stopping import Stopped, exit_code, signals_deferred, stopping_by_signal


def bridge_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import torch
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"argument --device: {args.device!r} is not a device; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device: CUDA is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda"):  # mps, xpu, meta...: this lesson trains on cpu or cuda only
        parser.error(f"argument --device: {args.device!r} is not supported here; use cpu or cuda")
    cnn = args.model == "cnn"
    for flag, given, wanted in (("--hidden", args.hidden is not None, "mlp"), ("--channels", args.channels is not None, "cnn"),
                                ("--blocks", args.blocks is not None, "cnn"), ("--no-batchnorm", args.no_batchnorm, "cnn"),
                                ("--lightning", args.lightning, "mlp")):
        if given and args.model != wanted:
            parser.error(f"argument {flag}: is for --model {wanted}, not --model {args.model}")
    if args.lightning:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            parser.error("argument --lightning: compares one process's plain loop with one Trainer; not under torchrun")
        try:
            import lightning  # noqa: F401
        except ImportError:
            parser.error("argument --lightning: needs PyTorch Lightning: pip install 'nn-lesson[lightning]'")
    from nn_lesson.hooks.threads import use_threads
    d = BridgeConfig()
    config = BridgeConfig(optimizer=args.optimizer or "", lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                          hidden=args.hidden or d.hidden, seed=args.seed, policy=args.policy or "", device=args.device,
                          model=args.model, channels=args.channels or d.channels, blocks=args.blocks or d.blocks,
                          batchnorm=not args.no_batchnorm)
    # the MLP 64-hidden-10; the CNN by its parameters (few: its cost is in the convolutions, and one thread
    # is what keeps a busy machine from slowing it down, as for the MLP)
    use_threads(sum(p.numel() for p in config.build_model().parameters()), args.threads)
    if cnn and config.batch_size > config.training_digits:
        parser.error(f"argument --batch-size: the CNN drops each epoch's short last batch, so a batch must fit in "
                     f"the {config.training_digits:,} training digits, got {config.batch_size:,}")
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
    # The heavy imports now, while a signal still simply ends the process (nothing claimed yet).
    import nn_lesson.lesson.bridge.board  # noqa: F401
    if cnn:
        import nn_lesson.lesson.bridge.cnn_board  # noqa: F401
        import nn_lesson.lesson.board.your_model  # noqa: F401
    with stopping_by_signal():  # from the claim on, SIGINT / SIGTERM stop training and keep what was captured
        default_name = (f"bridge_cnn_{config.optimizer}" + ("" if config.batchnorm else "_nobn") if cnn
                        else f"bridge_{config.optimizer}")
        if config.lr is not None:  # a learning rate asked for is in the name, as the lesson's runs have it
            default_name += f"_lr{config.lr:g}"
        claim = run_folder(parser, args, default_name + (f".rank{rank}" if rank else "")) if writes else None
        try:
            return train_and_write(args, config, rank, claim)
        except Stopped as err:  # before training began, or after the run was written
            if claim is not None:
                claim.release()
            print(f"nn-lesson bridge: stopped by {err}", file=sys.stderr)
            return exit_code(err)


def train_and_write(args: argparse.Namespace, config: BridgeConfig, rank: int, claim) -> int:
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.board.serve import view_hint
    from nn_lesson.lesson.bridge.board import write_bridge_tensorboard
    from nn_lesson.lesson.bridge.train import train_bridge
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.record import SNAPSHOT_FILE

    def progress(epoch: int, train: float, held: float) -> None:
        if not args.quiet and rank == 0:
            print(f"epoch {epoch + 1:>3}/{config.epochs}  accuracy: training {train:.1%}, held-out {held:.1%}",
                  flush=True)
    code, stopped_by, run = 0, None, None
    try:
        run = train_bridge(config, progress)
    except MissingExtra as err:
        if claim is not None:
            claim.release()
        print(f"nn-lesson bridge: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # SIGINT / SIGTERM: what was captured is written as a complete run
        stopped_by, run, code = err, getattr(err, "run", None), exit_code(err)
    except BaseException:
        if claim is not None:
            claim.release()
        raise

    pages = ()
    if args.lightning and stopped_by is None and run is not None:
        from nn_lesson.lesson.bridge.lightning_run import lightning_page, train_bridge_lightning
        if not args.quiet:
            print("the same run in a PyTorch Lightning Trainer ...", flush=True)
        pages = (lightning_page(run.log, train_bridge_lightning(config)),)

    def fill(folder: Path) -> None:
        if config.model == "cnn":   # the model view (write_tensorboard) and the CNN's pages
            from nn_lesson.lesson.bridge.cnn_board import fill_cnn_run
            fill_cnn_run(folder, run, pages)
            return
        run.save(folder / SNAPSHOT_FILE)
        with EventWriter(folder) as events:
            write_bridge_tensorboard(events, run, pages)
    with signals_deferred() as deferred:  # a signal now stops us after the run is complete, not halfway
        if run is None or claim is None:
            if claim is not None:
                claim.release()
            if stopped_by is not None:
                print(f"nn-lesson bridge: stopped by {stopped_by or 'SIGINT'} before a step was recorded; nothing "
                      "written", file=sys.stderr)
            return code
        if stopped_by is not None:
            print(f"nn-lesson bridge: stopped by {stopped_by or 'SIGINT'} after {len(run.log)} recorded steps; "
                  "writing what was captured", file=sys.stderr, flush=True)
        path = write_run(claim, fill)
    code = code or (128 + deferred.signum if deferred.signum else 0)
    if run.stats is not None:   # the CNN: every number of every k-th step, statistics of every step
        print(f"held-out accuracy {run.accuracy[-1]:.1%} after {len(run.accuracy)} epochs, {run.seconds:.2f} s of "
              f"training; kept: every number of {len(run.log)} steps ({run.log.number_bytes / 2**20:.1f} MiB), "
              f"statistics of {len(run.stats)} steps ({run.stats.number_bytes / 2**20:.1f} MiB)")
    else:
        print(f"held-out accuracy {run.accuracy[-1]:.1%} after {len(run.accuracy)} epochs, {run.seconds:.2f} s of "
              f"training, {len(run.log)} steps recorded ({run.log.nbytes / max(1, len(run.log)):.0f} bytes per recorded step)")
    print(run.coverage)
    if run.stopped:
        print(f"stopped early ({run.stopped}): the run holds what was recorded until then")
    print(f"run: {path}\nview it:   {view_hint(args.logdir)}")
    return code
