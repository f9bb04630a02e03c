"""Benchmark: python benchmarks/bench.py [--only SECTION[,SECTION...]] [--rounds 5] [--steps 3000] ...

Every variant runs the project's own code paths, alternating within each round so that the machine's
noise hits them alike; the table shows medians and ratios to the bare loop measured in the same round.
The last table lists every target with met / missed (or "not run" for a section left out).

Sections (all by default; --only picks some):
  lesson       the lesson net 3→4→2, per-sample: bare, the Recorder, the floor, hand-written module hooks
  mlp          the benchmark MLP 64→128→64→10 at batch 64 under each policy, wandb.watch beside it, and the
               statistics arithmetic alone
  contention   the benchmark MLP recorded in a fresh process, quiet and beside a busy-loop process
  memory       the benchmark MLP's statistics-only memory, short run against long run
  cli          the default CLI lesson run, end to end
  real-size    where users live (benchmarks/real_size.py): a small ResNet and a 4-layer TransformerEncoder,
               written the ordinary way, bare, under the Recorder's policies, under wandb.watch (offline)
               and the TensorBoard tutorial's add_histogram by hand; then the ResNet's memory under the
               default Recorder and under statistics only, each in a fresh process

  python benchmarks/bench.py --only real-size --rounds 3 --steps 20
  python benchmarks/bench.py --only real-size --real-memory-steps 1500      # the long memory check
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nn_lesson.data import load_students
from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotLog
from nn_lesson.hooks.statistics import WorkBuffers, row_stats
from nn_lesson.lesson.board.events import EventWriter
from nn_lesson.lesson.board.lesson_run import write_lesson_tensorboard
from nn_lesson.lesson.run.settings import LessonConfig
from nn_lesson.lesson.run.train import LessonSetup, make_record, run_epochs
from nn_lesson.models import make_mlp

sys.path.insert(0, str(Path(__file__).parent))
import real_size  # noqa: E402  (this folder is not a package)
from floor import MinimalCapture  # noqa: E402

# The tiny models' guards (issue 27): where Python's per-call cost is the whole step.
TARGETS = {"full capture": 1.5, "full capture, every step": 1.8, "statistics only, every step": 1.3}
HAND_HOOKS = "naive capture"   # the lesson's hand-written capture with module hooks
SECTIONS = ("lesson", "mlp", "contention", "memory", "cli", "real-size")
REAL_STEPS = 20    # timed steps per real-size variant run, by default
LESSON_STEPS = 3000
FLOOR = "floor: fewest hooks and copies, no checks"
PEERS = ("wandb.watch(log=\"all\", log_freq=1)", "wandb.watch(log=\"all\", log_freq=10)")
BRIDGE_SIZES = [64, 128, 64, 10]
# What the variants are timed with: wall-clock seconds, or with --cpu-time this thread's CPU seconds, which
# other processes on the same cores inflate far less (they still share the caches).
clock = time.perf_counter


def lesson_variant(name: str, epochs: int) -> tuple[float, SnapshotLog | None]:
    """Seconds for `epochs` of the lesson's per-sample loop under variant `name`, and its log if any."""
    config = LessonConfig(epochs=epochs)
    students = load_students()
    s = LessonSetup.of(config, students)
    initial = {n: p.detach().clone() for n, p in s.model.named_parameters()}
    if name == "naive capture":
        return _naive(s.model, s.optimizer, s.loss_fn, s.loader, s.x, s.y, epochs), None
    started = clock()
    if name == "bare":
        run_epochs(s.model, s.optimizer, s.loss_fn, s.loader, s.x, s.y, epochs)
        return clock() - started, None
    if name == FLOOR:
        started = clock()
        run_epochs(s.model, s.optimizer, s.loss_fn, s.loader, s.x, s.y, epochs,
                   MinimalCapture(s.model, s.optimizer, s.loss_fn))
        return clock() - started, None
    with Recorder(s.model, s.optimizer, s.loss_fn, steps_per_epoch=len(s.loader)) as rec:
        run_epochs(s.model, s.optimizer, s.loss_fn, s.loader, s.x, s.y, epochs, rec)
    if name == "full capture + complete export":
        record = make_record(config, students, s, initial, rec.log)
        with tempfile.TemporaryDirectory() as tmp:
            record.save(Path(tmp) / "snapshots.npz")
            with EventWriter(Path(tmp)) as events:
                write_lesson_tensorboard(events, record)
    return clock() - started, rec.log


def _naive(model, opt, loss_fn, loader, x, y, epochs) -> float:
    """The obvious way: a dict of .clone()s per step and full module backward hooks."""
    # The inputs need no gradient, so torch warns that the first layer's full backward hook sees outputs only.
    warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
    steps, current = [], {}
    handles = []
    for name, module in model.named_children():
        handles.append(module.register_forward_hook(
            lambda m, i, o, name=name: current.__setitem__(f"act:{name}", o.detach().clone())))
        handles.append(module.register_full_backward_hook(
            lambda m, gi, go, name=name: current.__setitem__(f"grad:{name}", go[0].detach().clone())))
    started = clock()
    for _ in range(epochs):
        for (idx,) in loader:
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            current.update({f"before:{n}": p.detach().clone() for n, p in model.named_parameters()})
            current.update({f"grad:{n}": p.grad.clone() for n, p in model.named_parameters()})
            opt.step()
            current.update({f"after:{n}": p.detach().clone() for n, p in model.named_parameters()})
            current["loss"] = loss.detach().clone()
            steps.append(dict(current))
    elapsed = clock() - started
    for h in handles:
        h.remove()
    return elapsed


def bridge_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64 * 50, 64, generator=g), torch.randint(0, 10, (64 * 50,), generator=g)


def bridge_variant(name: str, steps: int) -> float:
    """Seconds for `steps` of the bridge MLP's ordinary loop (DataLoader, batch 64, SGD) under `name`."""
    x, y = bridge_data()
    torch.manual_seed(0)
    model = make_mlp(BRIDGE_SIZES)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    policy = {"full capture, every step": CapturePolicy.full(), "statistics only, every step": CapturePolicy.stats(),
              "statistics only, every 10th step": CapturePolicy.stats(every=10),
              "full, every 10th step": CapturePolicy.every_k(10)}
    run = None
    if name == FLOOR:
        rec = contextlib.nullcontext(MinimalCapture(model, opt, loss_fn))
    elif name in PEERS:  # the peer: wandb offline, set up and finished outside the timed loop
        import wandb
        run = wandb.init(project="nn-lesson-bench", mode="offline", dir=os.environ["WANDB_DIR"])
        wandb.watch(model, log="all", log_freq=1 if "log_freq=1)" in name else 10)
        rec = contextlib.nullcontext()
    else:
        rec = Recorder(model, opt, loss_fn, policy=policy[name]) if name != "bare" else contextlib.nullcontext()
    started = clock()
    with rec:
        done = 0
        while done < steps:
            for xb, yb in loader:
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
                done += 1
                if done == steps:
                    break
    seconds = clock() - started
    if run is not None:
        wandb.unwatch(model)
        run.finish()
    return seconds


def statistics_compute_seconds(steps: int) -> tuple[float, int]:
    """The statistics policy's arithmetic alone: row_stats over the numbers a full capture of the benchmark
    MLP keeps per step (activations and their gradients, parameters, gradients, updates), 32 steps at a
    time as the log batches them. Returns (seconds per step, numbers per step)."""
    x, y = bridge_data()
    torch.manual_seed(0)
    model = make_mlp(BRIDGE_SIZES)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    with Recorder(model, opt, loss_fn) as rec:
        for i in range(steps):
            opt.zero_grad()
            loss_fn(model(x[64 * (i % 50): 64 * (i % 50 + 1)]), y[64 * (i % 50): 64 * (i % 50 + 1)]).backward()
            opt.step()
    log = rec.log
    blocks = [log.values(n) for n in log.columns if n.startswith(("act:", "act_grad:"))]
    blocks += [log.param(p.name, which) for p in log.params for which in ("before", "grad", "update")]
    work = WorkBuffers()
    started = clock()
    for start in range(0, steps, 32):
        for block in blocks:
            row_stats(block[start: start + 32], 16, work)
    return (clock() - started) / steps, sum(b[0].numel() for b in blocks)


def have_wandb() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


CHILD = """
import sys, time, torch
sys.path.insert(0, {here!r})
import bench
from nn_lesson.hooks import use_threads
from nn_lesson.models import make_mlp
use_threads(make_mlp(bench.BRIDGE_SIZES))
print(torch.get_num_threads(), bench.bridge_variant({variant!r}, {steps}))
"""


def contention_seconds(busy: bool, steps: int) -> tuple[float, int]:
    """The bridge MLP's recorded loop in a fresh process (threads as the CLI chooses them), quiet or with a
    busy-loop process on the other core. Returns (training seconds, torch threads used)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(Path(__file__).parent),
                                                                  variant="full, every 10th step", steps=steps)],
                             check=True, capture_output=True, text=True).stdout.split()
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return float(out[1]), int(out[0])


MEMORY_CHILD = """
import os, sys, torch
sys.path.insert(0, {here!r})
import bench
torch.set_num_threads(1)
def resident():  # bytes resident now (Linux); the peak would hide growth under import-time peaks
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
bench.stats_log(40)   # imports and first allocations
before = resident()
log = bench.stats_log({steps})
print(resident() - before, log.nbytes, len(log))
"""


def stats_log(steps: int) -> SnapshotLog:
    x, y = bridge_data()
    torch.manual_seed(0)
    model = make_mlp(BRIDGE_SIZES)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = x.split(64), y.split(64)
    with Recorder(model, opt, loss_fn, policy=CapturePolicy.stats()) as rec:
        for i in range(steps):
            opt.zero_grad()
            loss_fn(model(xs[i % len(xs)]), ys[i % len(ys)]).backward()
            opt.step()
    return rec.log


def memory_growth(steps: int) -> tuple[int, int]:
    """(resident memory growth in bytes, log bytes) of a statistics-only run of `steps` in a fresh process."""
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # no allocator settings
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD.format(here=str(Path(__file__).parent), steps=steps)],
                         check=True, capture_output=True, text=True, env=plain).stdout.split()
    return int(out[0]), int(out[1])


def cli_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nn_lesson", "--quiet", "--logdir", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def rounds(variants: list[str], run: Callable[[str], float], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(n):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate, so drift hits every variant alike
        for v in order:
            times[v].append(run(v))
    return times


def table(title: str, times: dict[str, list[float]], steps: int) -> list[str]:
    bare = times["bare"]
    lines = [title, "| variant | median µs/step | ratio to bare (median of per-round ratios) | target |",
             "|---|---|---|---|"]
    for v, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, bare))
        target = TARGETS.get(v)
        verdict = ("the peer" if v in PEERS else "reference (benchmarks/floor.py)" if v == FLOOR else "" if target is None else
                   f"≤ {target}× {'met' if ratio <= target else 'MISSED'}")
        lines.append(f"| {v} | {1e6 * statistics.median(ts) / steps:.1f} | {ratio:.2f}× | {verdict} |")
    return lines


def source_state() -> str:
    """The commit the measured code is at, and whether hooks/ had uncommitted changes (figures belong to it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "hooks"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "source: not a git checkout"
    return f"source: commit {head}" + (" with uncommitted changes in hooks/" if dirty else "")


def sections_of(values: list[str] | None) -> list[str]:
    if not values:
        return list(SECTIONS)
    chosen = [v.strip() for value in values for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in SECTIONS]
    if unknown:
        raise SystemExit(f"bench.py: unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return [v for v in SECTIONS if v in chosen]


def verdict(met: bool | None | str) -> str:
    """met / MISSED; "not determined" where the measurement could not decide; a string (e.g. "-") as is."""
    return met if isinstance(met, str) else "not determined" if met is None else "met" if met else "MISSED"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", metavar="SECTION[,SECTION]",
                   help=f"run only these sections (repeat or separate by commas): {', '.join(SECTIONS)}; "
                        "default: all")
    p.add_argument("--rounds", type=int, default=5, help="rounds of alternating variants (default: 5)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"lesson steps per variant, per-sample (default: {LESSON_STEPS}); when the lesson is not "
                        "run and --real-steps is not given, the real-size section's timed steps per variant")
    p.add_argument("--bridge-steps", type=int, default=500, help="bridge MLP steps, batch 64 (default: 500)")
    p.add_argument("--cli-runs", type=int, default=3, help="end-to-end CLI runs (default: 3)")
    p.add_argument("--memory-steps", type=int, default=500,
                   help="statistics-only steps for the memory row's short run (default: 500)")
    p.add_argument("--memory-long", type=int, default=20_000,
                   help="statistics-only steps for the memory row's long run (default: 20000)")
    p.add_argument("--real-steps", type=int, default=None,
                   help=f"real-size: timed steps per variant run, after {real_size.WARMUP} untimed ones; keep it "
                        f"a multiple of 10 so every-10th policies keep their share (default: {REAL_STEPS})")
    p.add_argument("--real-memory-steps", type=int, default=60,
                   help=f"real-size: ResNet steps of the memory runs, bare and under the default Recorder, each "
                        f"in a fresh process; statistics only runs max(this, {real_size.STATS_MEMORY_STEPS}) steps and "
                        f"compares its peak over steps 1-{real_size.FLAT_FROM} with the rest's (default: 60; 1500 is "
                        "an epoch of CIFAR-sized data, the issue's long check, ~20 min; 0 skips the memory runs)")
    p.add_argument("--memory-cap-gib", type=float, default=6.0,
                   help="real-size: a memory run stops once its resident set has grown by this much, so that a "
                        "Recorder without a working budget cannot take this machine down (default: 6)")
    p.add_argument("--real-models", default=",".join(real_size.MODELS),
                   help=f"real-size: which models to time, separated by commas, or none (the memory runs alone) "
                        f"(default: {','.join(real_size.MODELS)})")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the variants by this thread's CPU time instead of the wall clock (for a machine "
                        "whose cores other processes share); real-size variants by this process's CPU time, all "
                        "its threads (the TensorBoard writer's among them), which leaves out wandb's service process")
    args = p.parse_args(argv)
    sections = sections_of(args.only)
    global clock
    clock = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(1)  # tiny tensors: threads only add noise; the real-size models are timed on 1 too
    started = time.perf_counter()
    lesson_steps = args.steps if args.steps is not None else LESSON_STEPS
    real_steps = args.real_steps if args.real_steps is not None else (
        args.steps if args.steps is not None and "lesson" not in sections else REAL_STEPS)
    epochs = -(-lesson_steps // 6)
    steps = epochs * 6
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; {args.rounds} rounds; variants timed by "
          f"{'thread CPU time' if args.cpu_time else 'the wall clock'}; sections: {', '.join(sections)}; "
          f"{source_state()}\n", flush=True)
    targets: list[tuple[str, str, bool | None | str, str]] = []  # (section, target, met, measured)
    lesson = bridge = None

    if "lesson" in sections:
        logs: list[SnapshotLog] = []

        def lesson_run(variant: str) -> float:
            seconds, log = lesson_variant(variant, epochs)
            if variant == "full capture":
                logs.append(log)
            return seconds
        lesson = rounds(["bare", "full capture", FLOOR, "full capture + complete export", HAND_HOOKS], lesson_run,
                        args.rounds)
        print("\n".join(table(f"Lesson net 3→4→2, per-sample, {steps} steps", lesson, steps)), "\n", flush=True)
        log = logs[-1]
        print(f"SnapshotLog memory ({len(log)} steps, full capture): {log.nbytes / len(log):.0f} bytes/step held, "
              f"{log.number_bytes / len(log):.0f} bytes/step of numbers: {log.nbytes / log.number_bytes:.2f}× "
              f"(target ≤ 1.5×)\n", flush=True)

    if "mlp" in sections:
        variants = ["bare", "full capture, every step", FLOOR, "statistics only, every step",
                    "statistics only, every 10th step", "full, every 10th step"]
        if have_wandb():
            variants += list(PEERS)
        else:
            print("wandb is not installed: the peer rows are skipped (pip install -e '.[bench]')\n")
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off")
        with tempfile.TemporaryDirectory() as wandb_dir:
            os.environ["WANDB_DIR"] = wandb_dir
            bridge = rounds(variants, lambda v: bridge_variant(v, args.bridge_steps), args.rounds)
        params = sum(p.numel() for p in make_mlp(BRIDGE_SIZES).parameters())
        print("\n".join(table(f"Benchmark MLP 64→128→64→10 ({params} parameters; the bridge lesson trains 64→32→10), batch 64, {args.bridge_steps} steps"
                              + (" (wandb offline: init, unwatch and finish outside the timed loop)" if have_wandb() else ""),
                              bridge, args.bridge_steps)), "\n", flush=True)

        compute, numbers = statistics_compute_seconds(args.bridge_steps)
        bare_step = statistics.median(bridge["bare"]) / args.bridge_steps
        print(f"Statistics arithmetic alone (row_stats over the {numbers} numbers a step keeps, 32 steps at a time): "
              f"{1e6 * compute:.1f} µs/step, {compute / bare_step:.2f}× the bare step by itself: statistics every "
              f"step can cost no less than {1 + compute / bare_step:.2f}× with the arithmetic in the loop's thread\n",
              flush=True)
        full_ratio, stats_ratio = (statistics.median(t / b for t, b in zip(bridge[v], bridge["bare"]))
                                   for v in ("full capture, every step", "statistics only, every step"))
        print(f"Statistics every step {stats_ratio:.2f}× against full capture every step {full_ratio:.2f}× (target: "
              f"never dearer {'met' if stats_ratio <= full_ratio else 'MISSED'})\n", flush=True)

    if "contention" in sections:
        quiet: list[float] = []
        busy: list[float] = []
        threads = 0
        for r in range(args.rounds):
            for b in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, threads = contention_seconds(b, args.bridge_steps)
                (busy if b else quiet).append(seconds)
        ratio = statistics.median(b / q for b, q in zip(busy, quiet))
        print(f"Benchmark MLP recorded (full, every 10th step), {args.bridge_steps} steps in a fresh process with "
              f"{threads} torch thread (use_threads): quiet median {statistics.median(quiet):.2f} s, with a busy-loop "
              f"process beside it {statistics.median(busy):.2f} s: {ratio:.2f}× (target ≤ 1.5× "
              f"{'met' if ratio <= 1.5 else 'MISSED'})\n", flush=True)

    if "memory" in sections:
        short, long_ = memory_growth(args.memory_steps), memory_growth(args.memory_long)
        extra = (long_[0] - short[0]) - (long_[1] - short[1])  # growth beyond the statistics rows themselves
        print(f"Statistics-only memory, no environment settings: {args.memory_steps} steps: resident "
              f"+{short[0] / 2**20:.1f} MiB, log {short[1] / 1024:.0f} KiB; {args.memory_long} steps: resident "
              f"+{long_[0] / 2**20:.1f} MiB, log {long_[1] / 1024:.0f} KiB "
              f"({(long_[1] - short[1]) / (args.memory_long - args.memory_steps):.0f} bytes per step of statistics "
              f"rows); growth beyond the rows {extra / 2**20:+.1f} MiB (target flat: ≤ 8 MiB "
              f"{'met' if extra <= 8 * 2**20 else 'MISSED'})\n", flush=True)

    if "cli" in sections:
        cli = [cli_seconds() for _ in range(args.cli_runs)]
        print(f"Default CLI lesson run end to end (process start to last event flushed): median "
              f"{statistics.median(cli):.2f} s of {len(cli)} runs (target ≤ 3 s "
              f"{'met' if statistics.median(cli) <= 3 else 'MISSED'})\n", flush=True)

    real: dict[str, dict[str, list[float]]] = {}
    memory = None
    if "real-size" in sections:
        names, absent = real_size.variants()
        models = [m.strip() for m in args.real_models.split(",") if m.strip() and m.strip() != "none"]
        unknown = [m for m in models if m not in real_size.MODELS]
        if unknown:
            raise SystemExit(f"bench.py: unknown model {', '.join(unknown)}; choose from {', '.join(real_size.MODELS)}")
        real_clock = time.process_time if args.cpu_time else time.perf_counter
        for model_name in models:
            said: list[tuple[str, str]] = []
            real[model_name] = real_size.time_rounds(model_name, names, real_steps, args.rounds, real_clock,
                                                     lambda line: print(line, file=sys.stderr, flush=True), said)
            print("\n".join(real_size.timing_table(model_name, real[model_name], absent, real_steps, args.rounds,
                                                    said, "this process's CPU time" if args.cpu_time else
                                                    "the wall clock")), "\n", flush=True)
        if args.real_memory_steps > 0:
            memory = real_size.measure_memory(args.real_memory_steps, int(args.memory_cap_gib * 2**30),
                                              lambda line: print(line, file=sys.stderr, flush=True))
            print("\n".join(memory.lines()), "\n", flush=True)

    # ---- every target of issue 27, met / missed
    def row(section: str, target: str, met: bool | None, measured: str) -> None:
        targets.append((section, target, met, measured))

    def absent_row(section: str, target: str, why: str) -> None:
        targets.append((section, target, "-", why))

    if "real-size" in sections:
        for model_name in real_size.MODELS:
            if model_name not in real:
                absent_row("real-size", f"{model_name}: statistics every step ≤ 1.15×, below wandb.watch; every "
                           "number every 10th ≤ 1.05×", "not run (--real-models)")
        for model_name, times in real.items():
            stats_r = real_size.ratio(times, real_size.STATS)
            row("real-size", f"{model_name}: statistics every step ≤ 1.15× bare", stats_r <= 1.15, f"{stats_r:.2f}×")
            wandb_r = real_size.ratio(times, real_size.WANDB_EVERY)
            if wandb_r is None:
                absent_row("real-size", f"{model_name}: statistics every step below wandb.watch(log_freq=1)",
                           "wandb not installed")
            else:
                row("real-size", f"{model_name}: statistics every step below wandb.watch(log_freq=1)",
                    stats_r < wandb_r, f"{stats_r:.2f}× against {wandb_r:.2f}×")
            every_r = real_size.ratio(times, real_size.EVERY_10)
            row("real-size", f"{model_name}: every number every 10th step ≤ 1.05×", every_r <= 1.05, f"{every_r:.2f}×")
        if memory is not None:
            met, measured = memory.default_within_budget()
            row("real-size", f"resnet: the default policy stays within its budget ({memory.steps} steps)", met,
                measured)
            met, measured = memory.stats_flat()
            row("real-size", f"resnet: statistics-only memory flat ({memory.stats['steps']} steps)", met, measured)
        else:
            for t in ("resnet: the default policy stays within its budget", "resnet: statistics-only memory flat"):
                absent_row("real-size", t, "not run (--real-memory-steps 0)")
    else:
        for t in ("statistics every step ≤ 1.15× bare, below wandb.watch(log_freq=1)", "every number every 10th "
                  "step ≤ 1.05×", "resnet: the default policy within its budget; statistics-only memory flat"):
            absent_row("real-size", t, "not run")
    if lesson is not None:
        full_r = statistics.median(t / b for t, b in zip(lesson["full capture"], lesson["bare"]))
        hand_r = statistics.median(t / b for t, b in zip(lesson[HAND_HOOKS], lesson["bare"]))
        row("lesson", "full capture ≤ 1.5× bare", full_r <= 1.5, f"{full_r:.2f}×")
        row("lesson", "full capture no dearer than hand-written module hooks (naive capture)", full_r <= hand_r,
            f"{full_r:.2f}× against {hand_r:.2f}×")
    else:
        absent_row("lesson", "full capture ≤ 1.5× bare and no dearer than hand-written module hooks", "not run")
    if bridge is not None:
        full_r, stats_r = (statistics.median(t / b for t, b in zip(bridge[v], bridge["bare"]))
                           for v in ("full capture, every step", "statistics only, every step"))
        row("mlp", "full capture every step ≤ 1.8× bare", full_r <= 1.8, f"{full_r:.2f}×")
        row("mlp", "statistics every step ≤ 1.3× bare", stats_r <= 1.3, f"{stats_r:.2f}×")
        row("mlp", "statistics every step never dearer than full capture", stats_r <= full_r,
            f"{stats_r:.2f}× against {full_r:.2f}×")
    else:
        absent_row("mlp", "full capture ≤ 1.8×, statistics ≤ 1.3× and never dearer than full", "not run")
    print("Targets (issue 27; medians of alternating rounds, a benchmark, not a timed test)")
    print("| section | target | measured | verdict |\n|---|---|---|---|")
    for section, target, met, measured in targets:
        print(f"| {section} | {target} | {measured} | {verdict(met)} |")
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
