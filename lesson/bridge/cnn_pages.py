"""The CNN bridge's pages: the lesson's rule `weight_new = weight_old − lr × gradient` per layer at depth, and what
the health view shows, every number read from the run and every sentence about the run chosen by a claim over
its numbers (as the lesson's story does: lesson/story/claims.py). tests/test_bridge_cnn.py shows each claim true
on some runs and false on others.

A run's numbers come from two logs: `run.log` (every number of every k-th step) and `run.stats` (mean, std, norm,
min, max and a histogram of every tensor at every step, under the policy stats+every:K). Where a run was kept
another way, the claims read what there is and say what they cannot see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.bridge.train import BridgeRun, CNN_DEFAULT_LR
from nn_lesson.lesson.story.markdown import table
from nn_lesson.lesson.story.numbers import num, pct, scientific

RULE_OF_THUMB = 1e-3      # Karpathy's update:data ratio (std of the update / std of the weight) of a healthy layer
FAR_TOO_LARGE = 0.5       # an update half as spread as the weight itself, in one step: the lr is far too high
DEAD_SHARE = 0.8          # a ReLU whose outputs are 0 this often is mostly dead: no gradient flows through it
QUIET_BRANCH = 0.5        # a residual branch whose output is this much less spread than the block's input adds little
LEARNED = 0.9             # held-out accuracy of a net that learned the digits
CHANCE = 0.1              # ten digits
GUESSING = 2 * CHANCE     # held-out accuracy no better than this is guessing
LN10 = math.log(10)       # the loss of a uniform guess over ten digits
STUCK = 0.9               # a last-epoch loss at or above this share of ln 10 has not left the uniform guess


@dataclass(frozen=True)
class Claim:
    holds: bool
    sentence: str         # what the page says: the claim when it holds, what was seen instead when it does not


def _g(x: float) -> str:
    """A ratio or norm in a few significant digits: 0.0123, 4.56×10⁻⁵."""
    x = float(x)
    if not math.isfinite(x):
        return "not finite"
    return scientific(x, 3) if x != 0 and not 1e-3 <= abs(x) < 1e4 else f"{x:.3g}"


def source(run: BridgeRun) -> SnapshotLog:
    """Every step's numbers: the statistics where the run kept them, else the log."""
    return run.stats if run.stats is not None and len(run.stats) else run.log


def steps_per_epoch(run: BridgeRun) -> int:
    return run.epoch_end_steps[0] + 1 if run.epoch_end_steps else max(1, len(source(run)))


def epoch_rows(run: BridgeRun, which: str) -> torch.Tensor:
    """Rows of source(run) whose step lies in the first or the last epoch (by step, not by row: a log that kept
    every k-th step has fewer rows than steps)."""
    steps, n = source(run).step, steps_per_epoch(run)
    if which == "first":
        return steps < n
    last_end = run.epoch_end_steps[-1] if run.epoch_end_steps else int(steps.max()) if len(steps) else 0
    return (steps > last_end - n) & (steps <= last_end)


def main_weights(log: SnapshotLog) -> list[str]:
    """The convolutions' and linear layers' weights (2 or more dimensions), in the model's order; BatchNorm's
    scale (one number per channel, all 1 at the start, so it has no spread to compare with) is left out."""
    return [n for n in log.param_names if n.endswith(".weight") and len(log.slot(n).shape) >= 2]


def ratio_series(run: BridgeRun, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, std(update) / std(weight before the step)) of one weight at every step the run kept."""
    from nn_lesson.lesson.board.scalars import update_to_weight_ratio
    log = source(run)
    return log.step, update_to_weight_ratio(log, name).double()


def full_row(run: BridgeRun) -> int | None:
    """The last row of run.log that holds every number (before, gradient, after, activations), else None."""
    log = run.log
    if not log.has("param_after") or len(log) == 0:
        return None
    for row in range(len(log) - 1, -1, -1):
        if log[row].after:
            return row
    return None


# ---- the rule at depth ----
def rule_check(run: BridgeRun, row: int) -> list[tuple[str, float, float, bool]]:
    """Per parameter at `row`: (name, the largest |after − (before − lr × gradient)| measured against its
    float32 rounding bound, that bound, whether every number is within its own bound)."""
    snap = run.log[row]
    lr = snap.lr if snap.lr is not None else run.config.learning_rate
    eps = torch.finfo(torch.float32).eps
    out = []
    for name in run.log.param_names:
        before, grad, after = (t.double() for t in (snap.before[name], snap.grads[name], snap.after[name]))
        step = lr * grad
        off = (after - (before - step)).abs()
        bound = eps * (after.abs() + step.abs())     # one rounding of the float32 sum, with room for a second
        worst = int((off - bound).argmax()) if off.numel() else 0
        out.append((name, float(off.flatten()[worst]) if off.numel() else 0.0,
                    float(bound.flatten()[worst]) if off.numel() else 0.0,
                    bool((off <= bound).all())))
    return out


def rule_holds(run: BridgeRun) -> Claim:
    """Every parameter of every layer moved by exactly −lr × its gradient at the last full step (to float32
    rounding): the lesson's rule, unchanged at depth. False under momentum or Adam, whose updates are not."""
    row = full_row(run)
    if row is None:
        return Claim(False, "This run kept no step in full (its policy kept statistics only), so the rule cannot "
                            "be checked weight by weight; run with --policy stats+every:K.")
    checks = rule_check(run, row)
    bad = [c for c in checks if not c[3]]
    step = int(run.log.step[row])
    if not bad:
        return Claim(True, f"At step {step}, every one of the {sum(run.log.slot(n).numel for n, *_ in checks):,} "
                           f"numbers in all {len(checks)} parameters moved by exactly −lr × its gradient (to float32 "
                           "rounding): the lesson's rule, unchanged at depth.")
    worst = max(bad, key=lambda c: c[1] / max(c[2], 1e-300))
    return Claim(False, f"At step {step}, {len(bad)} of {len(checks)} parameters did not move by −lr × gradient "
                        f"(`{worst[0]}` is off by up to {_g(worst[1])}): the optimizer is **{run.config.optimizer}**, "
                        "whose update is not the lesson's rule (see bridge/02); with --optimizer sgd it is.")


def worked_weight(run: BridgeRun, row: int) -> tuple[str, tuple[int, ...]]:
    """The first layer (the stem's convolution: its gradient came through every block) and its number with the
    largest gradient at `row`."""
    names = main_weights(run.log)
    name = names[0]
    grad = run.log[row].grads[name]
    index = tuple(int(i) for i in torch.unravel_index(grad.abs().argmax(), grad.shape))
    return name, index


def rule_page(run: BridgeRun) -> tuple[str, str]:
    title = "cnn/01 the same rule, per layer at depth"
    claim = rule_holds(run)
    row = full_row(run)
    if row is None:
        return title, claim.sentence
    snap = run.log[row]
    lr = snap.lr if snap.lr is not None else run.config.learning_rate
    name, index = worked_weight(run, row)
    before, grad, after = (float(t[name][index]) for t in (snap.before, snap.grads, snap.after))
    where = f"`{name}{list(index)}`"
    depth = len(main_weights(run.log))
    worked = (f"One weight, {where} (the first layer: its gradient came back through all {depth} layers with "
              f"weights above it, by the chain rule), at step {snap.step}:\n\n"
              + table(["", "value"], [
                  ["weight_old (recorded before the step)", num(before, 8)],
                  ["gradient (recorded)", num(grad, 8)],
                  ["lr", f"{lr:g}"],
                  ["weight_old − lr × gradient", num(before - lr * grad, 8)],
                  ["weight_new (recorded after the step)", num(after, 8)],
              ]))
    rows = [[f"`{n}`", f"{run.log.slot(n).numel:,}", _g(off), _g(bound), "yes" if ok else "**no**"]
            for n, off, bound, ok in rule_check(run, row)]
    return title, (
        "The lesson's network learned by `weight_new = weight_old − lr × gradient`, one weight at a time. This "
        f"network has {len(run.log.param_names)} parameters in {depth} layers with weights, and "
        "`loss.backward()` gives every number in them a gradient at once; the step is the same rule for each.\n\n"
        f"{claim.sentence}\n\n{worked}\n\nEvery parameter at step {snap.step}: the largest gap between the recorded "
        "weight_new and weight_old − lr × gradient, beside what float32 rounding allows:\n\n"
        + table(["parameter", "numbers", "largest gap", "rounding allows", "the rule holds"], rows))


# ---- what the health view shows ----
def first_epoch_too_large(run: BridgeRun) -> Claim:
    """Some layer's update in the first epoch was at least FAR_TOO_LARGE of its weight's spread (500× the rule of
    thumb): the learning rate is far too high. A ratio that is not finite counts as too large."""
    rows = epoch_rows(run, "first")
    worst_name, worst_step, worst = None, 0, -1.0
    for name in main_weights(source(run)):
        steps, ratio = ratio_series(run, name)
        steps, first = steps[rows], ratio[rows]
        if not len(first):
            continue
        bad = ~torch.isfinite(first)
        i = int(bad.nonzero()[0]) if bad.any() else int(first.argmax())
        value = math.inf if bad.any() else float(first[i])
        if value > worst:
            worst_name, worst_step, worst = name, int(steps[i]), value
    if worst_name is None:
        return Claim(False, "No update ratio was kept for the first epoch.")
    if worst >= FAR_TOO_LARGE:
        size = "a weight that is no longer a number" if not math.isfinite(worst) else \
            f"{_g(worst)} of its weights' spread, {worst / RULE_OF_THUMB:,.0f}× the 1e-3 rule of thumb"
        return Claim(True, f"**The learning rate is too high.** At step {worst_step} the update of `{worst_name}` "
                           f"was {size}: one step's change was at least half as spread as the weights themselves. The "
                           "model view's update:data chart shows it: the first epoch's lines start far above the dashed "
                           "1e-3.")
    return Claim(False, f"No layer's update in the first epoch reached {FAR_TOO_LARGE:g} of its weights' spread: the "
                        f"largest was `{worst_name}` at step {worst_step}, {_g(worst)} "
                        f"({worst / RULE_OF_THUMB:,.0f}× the 1e-3 rule of thumb).")


def relu_layers(log: SnapshotLog) -> list[str]:
    return [layer for layer in log.layers if layer.rsplit(".", 1)[-1].startswith("relu")]


def dead_shares(run: BridgeRun, row: int) -> dict[str, float]:
    """Share of each ReLU's outputs that are exactly 0 at `row` of run.log (every image of the step)."""
    snap = run.log[row]
    return {layer: float((snap.activations[layer] == 0).double().mean())
            for layer in relu_layers(run.log) if layer in snap.activations}


def mostly_dead(run: BridgeRun) -> Claim:
    """A ReLU layer whose outputs are 0 for at least DEAD_SHARE of its numbers at the last full step: little
    gradient flows back through it (a ReLU's gradient is 0 where its output is 0)."""
    row = full_row(run)
    shares = dead_shares(run, row) if row is not None else {}
    if not shares:
        return Claim(False, "This run kept no layer outputs in full, so the dead share is not measured.")
    layer, share = max(shares.items(), key=lambda kv: kv[1])
    step = int(run.log.step[row])
    if share >= DEAD_SHARE:
        many = [f"`{k}` {pct(v, 0)}" for k, v in shares.items() if v >= DEAD_SHARE and k != layer]
        also = f" (also {', '.join(many)})" if many else ""
        return Claim(True, f"**Dead units.** At step {step}, {pct(share, 0)} of `{layer}`'s outputs are 0{also}: "
                           "where a ReLU outputs 0 its gradient is 0, so the layers below it hear little of the loss. "
                           "Switch the model view to the dead share to see them.")
    return Claim(False, f"No ReLU layer is mostly dead at step {step}: the most zeros are in `{layer}`, "
                        f"{pct(share, 0)} of its outputs (a ReLU outputs 0 wherever its input is negative).")


def branch_ratios(run: BridgeRun) -> list[tuple[str, float]]:
    """Per residual block at the first step: std(the branch's last output) / std(the block's input). The branch
    is conv1 → (bn1) → relu1 → conv2 → (bn2); its output is added to the input the shortcut carries."""
    log = source(run)
    layers = set(log.layers)

    def std0(layer: str) -> float | None:
        if log.has(f"stats:act:{layer}"):
            return float(log.stat(f"act:{layer}", "std")[0])
        if log.has(f"act:{layer}"):
            return float(log.activation(layer)[0].double().std(correction=0))
        return None
    # under torchrun the Recorder sees the DistributedDataParallel wrapper: every name starts with "module."
    at = "module." if "module.stem.relu" in layers else ""
    out = []
    i = 0
    while f"{at}layers.{i}.conv2" in layers:
        block_in = f"{at}stem.relu" if i == 0 else f"{at}layers.{i - 1}.relu"
        end = f"{at}layers.{i}.bn2" if f"{at}layers.{i}.bn2" in layers else f"{at}layers.{i}.conv2"
        a, b = std0(end), std0(block_in)
        if a is not None and b:
            out.append((f"{at}layers.{i}", a / b))
        i += 1
    return out


def quiet_branches(run: BridgeRun) -> Claim:
    """At the first step every residual branch's output is less than QUIET_BRANCH of its block's input in spread:
    the unnormalised convolutions shrink the signal, so each block passes its input on nearly unchanged and the
    branches' weights get little of the loss. With BatchNorm every branch ends at spread about 1."""
    ratios = branch_ratios(run)
    if not ratios:
        return Claim(False, "This run kept no residual block's outputs at its first step.")
    listed = ", ".join(f"`{b}` {v:.2f}" for b, v in ratios)
    if all(v < QUIET_BRANCH for _, v in ratios):
        return Claim(True, f"**The residual branches start quiet.** At the first step each block's branch output is "
                           f"only this spread, as a share of the block's input: {listed}. The branch's convolutions "
                           "leave the signal smaller than they found it, so every block adds little to what its shortcut carries; nothing rescales "
                           "it (BatchNorm would). Look at the activation histograms of `conv2` against the block "
                           "inputs.")
    return Claim(False, f"At the first step the residual branches are not quiet: each branch's output spread as a "
                        f"share of its block's input is {listed}"
                        + (" (BatchNorm rescales every branch to spread about 1)." if run.config.batchnorm else "."))


def learned(run: BridgeRun) -> Claim:
    acc = run.accuracy[-1] if run.accuracy else float("nan")
    if math.isfinite(acc) and acc >= LEARNED:
        return Claim(True, f"The net learned the digits: {pct(acc)} of the held-out digits right.")
    return Claim(False, f"The net did not learn the digits well: {pct(acc)} of the held-out digits right.")


def guessing(run: BridgeRun) -> Claim:
    acc = run.accuracy[-1] if run.accuracy else float("nan")
    if not math.isfinite(acc) or acc <= GUESSING:
        return Claim(True, f"**It is guessing:** {pct(acc)} of the held-out digits right, where guessing gets "
                           f"{pct(CHANCE, 0)}.")
    return Claim(False, f"It does better than guessing ({pct(CHANCE, 0)}): {pct(acc)} of the held-out digits right.")


def loss_stuck(run: BridgeRun) -> Claim:
    """The last epoch's mean training loss is at or above STUCK × ln 10, the loss of a uniform guess (10% on
    every digit); a loss that is not finite counts as stuck."""
    log = source(run)
    last = log.loss[epoch_rows(run, "last")].double()
    mean = float(last.mean()) if len(last) else float("nan")
    if not math.isfinite(mean) or mean >= STUCK * LN10:
        return Claim(True, f"**The loss is stuck:** the last epoch's mean training loss is {_g(mean)}, no lower "
                           f"than ln 10 = {LN10:.3f} by much, the loss of a uniform guess (10% on every digit).")
    return Claim(False, f"The loss fell: the last epoch's mean training loss is {_g(mean)}, "
                        f"{LN10 / mean:.0f}× below ln 10 = {LN10:.3f}, the loss of a uniform guess.")


def health_claims(run: BridgeRun) -> list[Claim]:
    return [learned(run), guessing(run), loss_stuck(run), first_epoch_too_large(run), mostly_dead(run),
            quiet_branches(run)]


def health_page(run: BridgeRun) -> tuple[str, str]:
    title = "cnn/02 what the health view shows"
    claims = health_claims(run)
    warnings = [c for c in claims[2:] if c.holds]
    verdict = claims[0] if claims[0].holds else claims[1] if claims[1].holds else claims[0]
    said = [verdict.sentence] + [c.sentence for c in warnings]
    if not warnings:
        said.append("No warning sign. " + " ".join(c.sentence for c in claims[3:]))
    first_rows, last_rows = epoch_rows(run, "first"), epoch_rows(run, "last")
    rows = []
    for name in main_weights(source(run)):
        _, ratio = ratio_series(run, name)
        first, last = ratio[first_rows], ratio[last_rows]
        rows.append([f"`{name}`", _g(first.max()) if len(first) else "–", _g(last.median()) if len(last) else "–"])
    row = full_row(run)
    shares = dead_shares(run, row) if row is not None else {}
    dead = [[f"`{k}`", pct(v, 0)] for k, v in shares.items()]
    return title, (
        "Open this run in the Lesson tab: it is drawn as the model view, one block per layer, coloured by the "
        "update ratio (std of the update / std of the weight; about 1e-3 is healthy). What this run's numbers say:"
        "\n\n" + "\n\n".join(said) + "\n\nThe update ratio of each layer with weights:\n\n"
        + table(["layer", "largest in epoch 1", "median in the last epoch"], rows)
        + (f"\n\nShare of each ReLU's outputs that are 0 at step {int(run.log.step[row])}:\n\n"
           + table(["ReLU", "dead share"], dead) if dead else ""))


def compare_page(run: BridgeRun) -> tuple[str, str]:
    """How to make the two runs to compare with this one; the settings only, no claim about numbers."""
    c = run.config
    this = ("the same net **without BatchNorm**" if not c.batchnorm else
            f"the net with BatchNorm at lr {c.learning_rate:g}")
    default_lr = CNN_DEFAULT_LR[c.optimizer]
    return "cnn/03 compare: without BatchNorm, too high a learning rate", (
        f"This run is {this} ({c.optimizer}, {c.epochs} epochs). To see what the health view shows when something "
        "is wrong, train the same net twice more into the same log directory:\n\n"
        f"    nn-lesson bridge --model cnn --name cnn\n"
        f"    nn-lesson bridge --model cnn --no-batchnorm --name cnn-no-bn\n"
        f"    nn-lesson bridge --model cnn --lr {50 * default_lr:g} --name cnn-lr-high\n\n"
        "In the Lesson tab pick one run, then another under **vs**: the blocks, the update-ratio lines over the "
        "steps and these pages side by side. Each run's cnn/02 page says what its own numbers show.")
