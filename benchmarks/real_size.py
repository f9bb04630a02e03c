"""The benchmark where users live: two models of the size people train on a CPU, written the ordinary way
(plain PyTorch; nothing of nn_lesson inside them), timed bare, under the Recorder's policies, and beside the
peers a user would otherwise reach for: wandb.watch (offline) and the TensorBoard tutorial's add_histogram
of every parameter and gradient, by hand.

    python benchmarks/bench.py --only real-size [--rounds 5] [--real-steps 20] [--real-memory-steps 60]

Timing: every variant rebuilds the same model, optimizer and data from one seed, runs a few untimed steps
with the variant attached, then `steps` timed steps (and the variant's own end: the Recorder's close, the
writer's close), alternating the order of the variants from round to round in one process; the ratio of a
variant is the median over rounds of its seconds per step over the bare loop's in the same round.

Memory: each variant runs in a fresh process (its peak is its own) that reads /proc/self/status: the peak
resident set (VmHWM, reset through /proc/self/clear_refs before the loop where the kernel allows it) above
the resident set before the loop, and the resident set after given steps.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from nn_lesson.hooks import CapturePolicy, Recorder

SEED = 0
WARMUP = 2  # untimed steps with the variant attached: first-touch allocations, lazy set-up


# ---------------------------------------------------------------- the models, written the ordinary way
class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, as people copy it: one in-place ReLU called twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class SmallResNet(nn.Module):
    """Stem conv + 4 residual blocks with BatchNorm, 32 -> 128 channels, 32x32 inputs, 10 classes."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.layer1 = BasicBlock(32, 32)
        self.layer2 = BasicBlock(32, 64, stride=2)
        self.layer3 = BasicBlock(64, 128, stride=2)
        self.layer4 = BasicBlock(128, 128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class EncoderClassifier(nn.Module):
    """Token embedding + learned positions, a 4-layer nn.TransformerEncoder (d_model 128, 4 heads), mean
    over the tokens, a linear head."""

    def __init__(self, vocab: int = 1000, tokens: int = 64, d: int = 128, heads: int = 4, layers: int = 4,
                 classes: int = 10):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d))
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens) + self.pos).mean(dim=1))


@dataclass
class Setup:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    batches: list[tuple[torch.Tensor, torch.Tensor]]


BATCHES = 8  # distinct synthetic batches, cycled


def resnet() -> Setup:
    g = torch.Generator().manual_seed(SEED)
    batches = [(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
               for _ in range(BATCHES)]
    torch.manual_seed(SEED)
    model = SmallResNet()
    return Setup(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), nn.CrossEntropyLoss(), batches)


def encoder() -> Setup:
    g = torch.Generator().manual_seed(SEED)
    batches = [(torch.randint(0, 1000, (16, 64), generator=g), torch.randint(0, 10, (16,), generator=g))
               for _ in range(BATCHES)]
    torch.manual_seed(SEED)
    model = EncoderClassifier()
    return Setup(model, torch.optim.AdamW(model.parameters(), lr=3e-4), nn.CrossEntropyLoss(), batches)


MODELS: dict[str, tuple[str, Callable[[], Setup]]] = {
    "resnet": ("Small ResNet (stem + 4 BasicBlocks with BatchNorm, 32→128 channels), 32×32 inputs, batch 32, "
               "SGD momentum 0.9", resnet),
    "encoder": ("nn.TransformerEncoder, 4 layers, d_model 128, 4 heads, 64 tokens, batch 16, linear head, AdamW",
                encoder),
}


def train_steps(s: Setup, start: int, n: int, after_step: Callable[[int, torch.Tensor], None] | None = None) -> None:
    """The ordinary loop: zero_grad, forward, loss, backward, step."""
    model, opt, loss_fn = s.model, s.optimizer, s.loss_fn
    for i in range(start, start + n):
        x, y = s.batches[i % len(s.batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(i, loss)


# ---------------------------------------------------------------- the variants
WANDB_EVERY = "wandb.watch(log=\"all\", log_freq=1)"
WANDB_100 = "wandb.watch(log=\"all\", log_freq=100)"
TB_BY_HAND = "TensorBoard tutorial by hand: add_histogram of every parameter and gradient, every step"
STATS = "Recorder, CapturePolicy.stats() (statistics every step)"
EVERY_10 = "Recorder, CapturePolicy.every_k(10) (every number every 10th step)"
STATS_AND_EVERY = "Recorder, CapturePolicy.stats_and_every(10) (statistics every step, every number every 10th)"
DEFAULT = "Recorder(model, opt, loss_fn), no policy (the default)"
RECORDER_POLICIES: dict[str, Callable[[], CapturePolicy | None]] = {
    STATS: CapturePolicy.stats,
    EVERY_10: lambda: CapturePolicy.every_k(10),
    STATS_AND_EVERY: lambda: CapturePolicy.stats_and_every(10),  # type: ignore[attr-defined]
    DEFAULT: lambda: None,
}


def have_stats_and_every() -> bool:
    return hasattr(CapturePolicy, "stats_and_every")


def have_wandb() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def variants() -> tuple[list[str], dict[str, str]]:
    """The variants this machine can run, and a note for each one it cannot."""
    names, absent = ["bare", STATS, EVERY_10], {}
    if have_stats_and_every():
        names.append(STATS_AND_EVERY)
    else:
        absent[STATS_AND_EVERY] = "not available (this Recorder's CapturePolicy has no stats_and_every)"
    names.append(DEFAULT)
    if have_wandb():
        names += [WANDB_EVERY, WANDB_100]
    else:
        absent[WANDB_EVERY] = absent[WANDB_100] = "wandb not installed (pip install -e '.[bench]')"
    names.append(TB_BY_HAND)
    return names, absent


def run_variant(model_name: str, variant: str, steps: int, tmp: Path, clock: Callable[[], float]) -> float:
    """Seconds per step of `steps` timed steps of `model_name` under `variant` (after WARMUP untimed ones)."""
    s = MODELS[model_name][1]()
    gc.collect()
    if variant == "bare":
        train_steps(s, 0, WARMUP)
        started = clock()
        train_steps(s, WARMUP, steps)
        return (clock() - started) / steps
    if variant in RECORDER_POLICIES:
        rec = Recorder(s.model, s.optimizer, s.loss_fn, policy=RECORDER_POLICIES[variant]())
        with rec:
            train_steps(s, 0, WARMUP)
            started = clock()
            train_steps(s, WARMUP, steps)
        seconds = clock() - started  # the Recorder's close (its last flush) included
        del rec
        gc.collect()
        return seconds / steps
    if variant == TB_BY_HAND:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(tmp / f"tb-{model_name}-{time.monotonic_ns()}"))

        def histograms(step: int, loss: torch.Tensor) -> None:
            writer.add_scalar("loss", loss.item(), step)
            for name, p in s.model.named_parameters():
                writer.add_histogram(name, p, step)
                writer.add_histogram(f"{name}.grad", p.grad, step)
        train_steps(s, 0, WARMUP, histograms)
        started = clock()
        train_steps(s, WARMUP, steps, histograms)
        writer.close()  # its events written to disk, inside the timing
        return (clock() - started) / steps
    if variant in (WANDB_EVERY, WANDB_100):
        import wandb
        # Offline; the run's set-up and finish stay outside the timed loop (its service process starts and
        # writes the run file there). The loss is logged every step as wandb's own examples do: that commit is
        # what sends watch's histograms on.
        run = wandb.init(project="nn-lesson-bench", mode="offline", dir=str(tmp))
        wandb.watch(s.model, log="all", log_freq=1 if variant == WANDB_EVERY else 100)

        def log_loss(step: int, loss: torch.Tensor) -> None:
            run.log({"loss": loss.item()})
        train_steps(s, 0, WARMUP, log_loss)
        started = clock()
        train_steps(s, WARMUP, steps, log_loss)
        seconds = clock() - started
        wandb.unwatch(s.model)
        run.finish()
        return seconds / steps
    raise ValueError(variant)


class _Said(logging.Handler):
    """What the Recorder says (its one-line notes go to the "nn_lesson" logger), kept per variant, each once."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.variant = ""
        self.lines: dict[tuple[str, str], None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.lines[(self.variant, record.getMessage())] = None


def time_rounds(model_name: str, names: list[str], steps: int, n_rounds: int, clock: Callable[[], float],
                say: Callable[[str], None], said: list[tuple[str, str]] | None = None) -> dict[str, list[float]]:
    """Alternating rounds of every variant; what the Recorder said during them is appended to `said`."""
    times: dict[str, list[float]] = {v: [] for v in names}
    handler, logger = _Said(), logging.getLogger("nn_lesson")
    logger.addHandler(handler)
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(n_rounds):
                order = names if r % 2 == 0 else names[::-1]
                for v in order:
                    handler.variant = v
                    times[v].append(run_variant(model_name, v, steps, Path(tmp), clock))
                say(f"  {model_name}: round {r + 1}/{n_rounds} done")
    finally:
        logger.removeHandler(handler)
        if said is not None:
            said.extend(handler.lines)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return times


def ratio(times: dict[str, list[float]], variant: str) -> float | None:
    if variant not in times or not times[variant]:
        return None
    return statistics.median(t / b for t, b in zip(times[variant], times["bare"]))


def timing_table(model_name: str, times: dict[str, list[float]], absent: dict[str, str], steps: int,
                 n_rounds: int, said: list[tuple[str, str]] = (), timed_by: str = "the wall clock") -> list[str]:
    threads = torch.get_num_threads()
    lines = [f"{MODELS[model_name][0]}: {steps} timed steps after {WARMUP} untimed, {n_rounds} rounds, {threads} "
             f"torch thread{'s' * (threads > 1)}, timed by {timed_by}",
             "| variant | median ms/step | ratio to bare (median of per-round ratios) | each round's ratio |",
             "|---|---|---|---|"]
    order = ["bare", STATS, EVERY_10, STATS_AND_EVERY, DEFAULT, WANDB_EVERY, WANDB_100, TB_BY_HAND]
    for v in order:
        if v in times:
            each = " ".join(f"{t / b:.2f}" for t, b in zip(times[v], times["bare"]))
            lines.append(f"| {v} | {1e3 * statistics.median(times[v]):.1f} | {ratio(times, v):.2f}× | {each} |")
        else:
            lines.append(f"| {v} | {absent.get(v, 'not run')} | | |")
    lines.append("(Recorder rows include its close; wandb offline: the loss logged with wandb.log each step, "
                 "init and finish outside the timing; TensorBoard: the loss scalar too, the writer's close inside)")
    if WANDB_100 in times and steps + WARMUP < 100:
        lines.append(f"(log_freq=100: no histogram step falls in {WARMUP + steps} steps; the row is watch's hooks "
                     f"counting and the loss logged each step)")
    first: dict[str, tuple[str, int]] = {}
    for variant, line in said:  # the first line each variant said, and how many more (a budget moves with the
        text, n = first.get(variant, (line, 0))  # memory available, so the same note differs in its numbers)
        first[variant] = (text, n + 1)
    for variant, (line, n) in first.items():
        lines.append(f"{variant.split(' (')[0]} said: {line}" + (f" ({n} notes in all)" if n > 1 else ""))
    return lines


# ---------------------------------------------------------------- memory, one fresh process per variant
MEMORY_CHILD = """
import json, sys, torch
sys.path.insert(0, {here!r})
import real_size
torch.set_num_threads(1)
print(json.dumps(real_size.memory_run({variant!r}, {steps}, {sample_at}, {cap})))
"""


def _status(field: str) -> int:
    """A VmXXX field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset VmHWM to the current resident set (Linux 4.0+); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


BUDGET_NAMES = ("memory_budget", "budget", "budget_bytes", "memory_budget_bytes")


def stated_budget(rec: Recorder) -> tuple[int | None, str]:
    """The memory budget the Recorder says it holds (bytes) and where it said so, if it exposes one: an
    attribute of the Recorder or of its report, an int of bytes or an object with a `bytes`/`limit` field."""
    places = [("rec", rec)]
    with contextlib.suppress(Exception):
        places.append(("rec.report()", rec.report()))
    for where, obj in places:
        for name in BUDGET_NAMES:
            value = getattr(obj, name, None)
            if callable(value) and not isinstance(value, (int, float)):
                with contextlib.suppress(Exception):
                    value = value()
            for field in ("bytes", "limit", "limit_bytes", "total"):
                if value is not None and not isinstance(value, (int, float)) and hasattr(value, field):
                    value = getattr(value, field)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return int(value), f"{where}.{name}"
    return None, ""


def memory_run(variant: str, steps: int, sample_at: int, cap: int) -> dict:
    """In a fresh process: the ResNet for `steps` steps, bare or under a Recorder policy ("default" or
    "stats"). The peak resident set is read over two windows, steps 1..sample_at and sample_at+1..steps
    (VmHWM reset at the start of each; where the kernel refuses the reset, the largest resident set read
    after each step). Stops early once the resident set has grown by `cap` bytes (a guard for this
    machine, not the Recorder's)."""
    s = resnet()
    rec = None
    if variant != "bare":
        rec = Recorder(s.model, s.optimizer, s.loss_fn, policy=CapturePolicy.stats() if variant == "stats" else None)
        rec.start()
    gc.collect()
    before = _resident()
    hwm = _reset_peak()
    peaks: list[int] = []       # the peak growth of each window
    sampled_max = 0
    growth_at: dict[str, int] = {}
    log_bytes: dict[str, int] = {}
    stopped_at = None
    done = 0
    for i in range(steps):
        train_steps(s, i, 1)
        done = i + 1
        now = _resident() - before
        sampled_max = max(sampled_max, now)
        if done in (sample_at, steps):
            growth_at[str(done)] = now
            if rec is not None:
                log_bytes[str(done)] = rec.log.nbytes
            peaks.append(_status("VmHWM") - before if hwm else sampled_max)
            sampled_max = 0
            hwm = hwm and _reset_peak()
        if now > cap:
            stopped_at = done
            peaks.append(_status("VmHWM") - before if hwm else sampled_max)
            break
    out = {"variant": variant, "steps": done, "stopped_at": stopped_at, "peak_growth": max(peaks),
           "window_peaks": peaks, "peak_is_hwm": hwm, "growth_at": growth_at, "log_bytes_at": log_bytes,
           "budget": None, "budget_from": "", "report_line": ""}
    if rec is not None:
        out["budget"], out["budget_from"] = stated_budget(rec)
        rec.close()
        with contextlib.suppress(Exception):
            out["report_line"] = rec.report().line()
    return out


def memory_child(variant: str, steps: int, sample_at: int, cap: int) -> dict:
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # no allocator settings
    code = MEMORY_CHILD.format(here=str(Path(__file__).parent), variant=variant, steps=steps, sample_at=sample_at,
                               cap=cap)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=plain)
    if done.returncode != 0:
        raise RuntimeError(f"memory run {variant!r} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["said"] = list(dict.fromkeys(line.strip() for line in done.stderr.splitlines()
                                     if line.strip().lower().startswith("recorder")))
    return out


def mib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if abs(n) >= 2**30 else f"{n / 2**20:.1f} MiB"


STATS_MEMORY_STEPS = 200   # the statistics-only run: at least this many steps, so that its first window
FLAT_FROM = 100            # (steps 1-100) holds the allocator's warm-up and the second is steady


@dataclass
class MemoryResult:
    steps: int
    bare: dict
    default: dict
    stats: dict
    cap: int

    def lines(self) -> list[str]:
        b, d, st = self.bare, self.default, self.stats
        peak = "peak RSS (VmHWM)" if d["peak_is_hwm"] else "largest sampled RSS (VmHWM could not be reset)"
        lines = [f"Memory, the ResNet, a fresh process per variant ({peak} above the RSS before the loop, over "
                 "two windows of steps):",
                 "| variant | steps run | peak, first window | peak, second window | RSS growth at the window's "
                 "end | at the last step | log bytes at the last step |", "|---|---|---|---|---|---|---|"]
        for name, r in (("bare", b), ("default Recorder (no policy)", d), ("CapturePolicy.stats()", st)):
            at, wp, a, last = r["growth_at"], r["window_peaks"], r["sample_at"], r["steps"]
            lines.append(f"| {name} | {last}" + (f" (stopped: grew past the {mib(self.cap)} cap)"
                                                  if r["stopped_at"] else "")
                         + f" | steps 1-{a}: {mib(wp[0])} | "
                         + (f"steps {a + 1}-{last}: {mib(wp[1])}" if len(wp) > 1 else "-")
                         + f" | {mib(at[str(a)]) if str(a) in at else '-'}"
                         + f" | {mib(at[str(last)]) if str(last) in at else '-'}"
                         + f" | {mib(r['log_bytes_at'][str(last)]) if str(last) in r['log_bytes_at'] else '-'} |")
        if d["budget"] is not None:
            lines.append(f"default Recorder's budget: {mib(d['budget'])} ({d['budget_from']})")
        else:
            lines.append("default Recorder's budget: none exposed (looked for "
                         + ", ".join(f"rec.{n}" for n in BUDGET_NAMES) + " and the same on rec.report())")
        for name, r in (("default Recorder", d), ("statistics-only Recorder", st)):
            for line in r["said"]:
                lines.append(f"{name} said: {line}")
            if r["report_line"]:
                lines.append(f"{name}'s report: {r['report_line']}")
        return lines

    def default_within_budget(self) -> tuple[bool | None, str]:
        d = self.default
        extra = d["peak_growth"] - self.bare["peak_growth"]  # above what the bare loop's own step needs
        grown = f"peak RSS {mib(d['peak_growth'])} above the loop's start, {mib(extra)} above bare's"
        if d["budget"] is None:
            if d["stopped_at"]:
                return False, f"no budget exposed; grew past the {mib(self.cap)} cap by step {d['stopped_at']}"
            return False, f"no budget exposed; {grown} after {d['steps']} steps"
        if d["stopped_at"] and d["budget"] > self.cap:
            return None, (f"not determined: the {mib(self.cap)} cap of this run is below the budget "
                          f"{mib(d['budget'])}; raise --memory-cap-gib")
        met = extra <= d["budget"] and not d["stopped_at"]
        return met, f"{grown} after {d['steps']} steps; budget {mib(d['budget'])}"

    def stats_flat(self) -> tuple[bool | None, str]:
        """Flat: the peak of the later window is no higher than the earlier one's plus the statistics rows
        added between them plus 8 MiB (the allocator's slack)."""
        st = self.stats
        a, last = str(st["sample_at"]), str(st["steps"])
        if st["stopped_at"] or len(st["window_peaks"]) < 2:
            return False, ("not measured: the run grew past the cap" if st["stopped_at"] else
                           "not measured: too few steps for two windows")
        first, second = st["window_peaks"][:2]
        rows = st["log_bytes_at"][last] - st["log_bytes_at"][a]
        extra = second - first - rows
        return extra <= 8 * 2**20, (f"peak steps 1-{a} {mib(first)}, steps {int(a) + 1}-{last} {mib(second)}; "
                                    f"statistics rows added {mib(rows)}; beyond them {mib(extra)} (flat: ≤ 8 MiB)")


def measure_memory(steps: int, cap: int, say: Callable[[str], None]) -> MemoryResult:
    """bare and the default Recorder for `steps` steps (windows split at min(100, steps/2)); statistics only
    for max(steps, STATS_MEMORY_STEPS) steps, split at step FLAT_FROM."""
    runs = {}
    for variant in ("bare", "default", "stats"):
        n = max(steps, STATS_MEMORY_STEPS) if variant == "stats" else steps
        sample_at = FLAT_FROM if variant == "stats" else min(FLAT_FROM, max(1, steps // 2))
        runs[variant] = memory_child(variant, n, sample_at, cap)
        runs[variant]["sample_at"] = sample_at
        say(f"  memory: {variant} done")
    return MemoryResult(steps, runs["bare"], runs["default"], runs["stats"], cap)
