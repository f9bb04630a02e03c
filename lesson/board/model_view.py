"""The Lesson tab's view of your own model (a run written by write_tensorboard): the model as a picture of its health.

For the step on screen (a row of the run's snapshots.npz) this answers, as JSON for static/model_view.js:

- every recorded module in the model's order, grouped by its parent path (stem, layers.0, ..., head; a module
  that holds other recorded modules is a group of its own), each with its health at that step:
  the update-to-weight ratio std(update) / std(weight before the step) of its weight (Karpathy's rule of thumb:
  about 1e-3), the norm of its weight's gradient, and the share of its outputs that are dead (exactly 0 where
  the output is never negative: a ReLU) or saturated (|x| > 0.97 where the output lies in [-1, 1] and goes below
  0: a tanh; x < 0.03 or > 0.97 where it lies strictly in (0, 1): a sigmoid);
- the four diagnostics of deep nets of "Building makemore, part 3": each module's activation, activation-gradient
  and weight-gradient histograms at the step (with the weight gradient's grad:data ratio) and the update:data ratio
  of every weight over all steps on log10, beside the 1e-3 line.

Every number is the run's own: from the full rows where the step has them (snapshots.npz), else from the
statistics of every step (statistics.npz beside it, or a statistics-only snapshots.npz). The dead and saturated
shares need the outputs themselves: a step with statistics alone answers null for them, and says why.
One colour scale for every step of a run: the ratio on a fixed log scale (1e-5 .. 1e-1, 1e-3 in the middle),
the gradient norm on a log scale over the norms of every step, the dead share from 0 to 1.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nn_lesson.hooks.statistics import SAMPLED_ABOVE

STATISTICS_FILE = "statistics.npz"
BINS = 16                 # histogram buckets, as the Recorder's statistics keep them (torch.histc's convention)
RULE = 1e-3               # Karpathy's update:data ratio of a healthy layer
RATIO_LOG10 = (-5.0, -1.0)   # the ratio's colour scale (log10), one for every run and step
COLOURS = 8               # colour bins of every measure
SERIES_POINTS = 400       # at most this many steps in the ratio-over-steps series (evenly spaced)
DEAD_AT = 0.0             # a ReLU unit's output that is exactly this is dead
SATURATED_AT = 0.97       # |tanh| above this (sigmoid within 0.03 of 0 or 1) is saturated, as in makemore part 3
MEASURES = ("ratio", "grad_norm", "dead")
# std(weight) is 0 when every weight is equal (a BatchNorm's scale starts at all ones): the ratio divides by it
RATIO_UNDEFINED = "its weights are all equal at this step (std 0, as a BatchNorm's start at 1): no update ratio yet"


def model_step(loaded: dict, row: int, root: Path, parts: tuple[str, ...], other: tuple | None = None,
               series: bool = True) -> dict:
    """The JSON of the model view at row `row` of a loaded model run (the plugin's cached run: its "log"), the run
    folder being root/parts... (statistics.npz beside its snapshots is opened through safe_open, as every file the
    tab reads). `other`: (loaded, root, parts) of a second model run shown beside it (vs): the gradient norm's colour
    scale then spans both runs' norms, so one colour is one norm in both pictures (the ratio's scale is fixed).
    `series`: False leaves out the ratio over every step (the same at every step: the tab asks for it once a run)."""
    if loaded.get("kind") != "model":
        raise ValueError("the model view is for your own model's runs (write_tensorboard); "
                         f"this is a {loaded.get('kind')} run")
    run = run_part(loaded, root, parts)
    scale = run["scale"]
    if other is not None:
        scale = shared_scale(scale, run_part(*other)["scale"])
    log, stats = loaded["log"], run["stats"]
    snap = log[row]
    stats_row = run["stats_rows"].get(snap.step)
    stats_snap = stats[stats_row] if stats is not None and stats_row is not None else None
    blocks = [_block(m, snap, stats_snap, scale) for m in run["modules"]]
    groups: dict[str, list[dict]] = {}
    for b in blocks:
        groups.setdefault(b["group"], []).append(b)
    return {
        "kind": "model", "row": row, "step": snap.step, "epoch": snap.epoch,
        "loss": _num(snap.loss) if snap.loss is not None else None,
        "full_row": bool(snap.after) or bool(snap.activations),
        "statistics": run["stats_source"],
        # the rows the slider moves between, and the steps the statistics (and the chart) hold: they differ when
        # every number was kept only every k-th step
        "rows": len(log), "statistics_steps": len(stats) if stats is not None and stats is not log else None,
        "groups": [{"name": g, "blocks": [b["name"] for b in members], "worst": _worst(members, scale)}
                   for g, members in groups.items()],
        "blocks": blocks,
        "scale": scale,
        "worst_rule": WORST,
        "series": run["series"] if series else None,
        "rule": RULE,
    }


def run_part(loaded: dict, root: Path, parts: tuple[str, ...]) -> dict:
    """What the model view computes once per run (the statistics, the modules' order, the ratio over every step,
    the colour scales), kept with the loaded run while its statistics.npz is the same file."""
    stats_id = _statistics_identity(root, parts)
    run = loaded.get("_model_view")
    if run is None or run["stats_id"] != stats_id:
        run = _run_part(loaded["log"], root, parts)
        loaded["_model_view"] = run
    return run


def shared_scale(a: dict, b: dict) -> dict:
    """The colour scales of two runs side by side: the gradient norm's log range spans both."""
    ga, gb = a["grad_norm"]["log10"], b["grad_norm"]["log10"]
    both = [r for r in (ga, gb) if r]
    grad = [min(r[0] for r in both), max(r[1] for r in both)] if both else None
    return {**a, "grad_norm": {**a["grad_norm"], "log10": grad,
                               "label": "norm of the weight's gradient, log scale over every step of both runs"}}


# what a folded group shows: its worst block for the measure on screen, named
WORST = {
    "ratio": "the update ratio farthest from 1e-3",
    "grad_norm": "the largest gradient norm",
    "dead": "the largest dead / saturated share",
}


def _worst(blocks: list[dict], scale: dict) -> dict:
    """For each measure, the block of the group a folded group is coloured by (WORST says which), its value and
    its bin on the view's scale; None where no block of the group has the measure."""
    out = {}
    for measure, key in (("ratio", lambda v: abs(math.log10(v) - math.log10(RULE))),
                         ("grad_norm", lambda v: v), ("dead", lambda v: v)):
        have = [b for b in blocks if b[measure] is not None and (measure == "dead" or b[measure] > 0)]
        if not have:
            out[measure] = None
            continue
        pick = max(have, key=lambda b: key(b[measure]))
        out[measure] = {"block": pick["name"], "value": pick[measure], "bin": pick["bins"][measure]}
    return out


# ---- the run: once ----
def _run_part(log, root: Path, parts: tuple[str, ...]) -> dict:
    stats, source, stats_id = _statistics(log, root, parts)
    modules = modules_of(log, stats)
    main = {m["name"]: m["main"] for m in modules}
    norms = [v for m in modules if m["main"] for v in _grad_norms(log, stats, m["main"]) if v > 0 and math.isfinite(v)]
    grad_range = [math.log10(min(norms)), math.log10(max(norms))] if norms else None
    if grad_range and grad_range[1] - grad_range[0] < 1e-9:
        grad_range = [grad_range[0] - 0.5, grad_range[1] + 0.5]
    return {
        "stats": stats, "stats_source": source, "stats_id": stats_id, "modules": modules,
        "stats_rows": {int(s): i for i, s in enumerate(stats.step.tolist())} if stats is not None else {},
        "series": _series(log, stats, [(n, p) for n, p in main.items() if p and len(_shape(log, p)) >= 2]),
        "scale": {
            "ratio": {"log10": list(RATIO_LOG10), "rule": RULE, "bins": COLOURS,
                      "label": "update-to-weight ratio std(update) / std(weight), log scale"},
            "grad_norm": {"log10": grad_range, "bins": COLOURS,
                          "label": "norm of the weight's gradient, log scale over every step"},
            "dead": {"range": [0.0, 1.0], "bins": COLOURS,
                     "label": "share of outputs dead (ReLU: exactly 0) or saturated (tanh, sigmoid)"},
        },
    }


def _statistics(log, root: Path, parts: tuple[str, ...]):
    """The statistics of every step: statistics.npz beside the snapshots (opened as every file the tab reads:
    safe_open.opened, no link followed, a regular file only), else the snapshots themselves when they are a
    statistics-only log; with where they came from and the file's identity (None: no file read)."""
    from nn_lesson.hooks import SnapshotLog
    from nn_lesson.lesson.board.safe_open import identity, opened
    try:
        with opened(root, parts, STATISTICS_FILE) as (_, st, readable):
            return SnapshotLog.load(readable), STATISTICS_FILE, identity(st)
    except (OSError, ValueError):     # absent, a link, not a regular file, or unreadable: the full rows alone
        pass
    if any(name.startswith("stats:") for name in log.columns):
        return log, "snapshots.npz", None
    return None, None, None


def _statistics_identity(root: Path, parts: tuple[str, ...]):
    """The identity of statistics.npz as _statistics would read it now (None when it would read none)."""
    from nn_lesson.lesson.board.safe_open import identity, opened
    try:
        with opened(root, parts, STATISTICS_FILE) as (_, st, _readable):
            return identity(st)
    except OSError:
        return None


def _shape(log, param: str) -> tuple:
    return tuple(log.slot(param).shape)


def modules_of(log, stats=None) -> list[dict]:
    """Recorded modules in the order the forward met them: those with an output recorded (log.layers), and a module
    whose parameters alone were recorded placed before its first recorded child (else at the end). Each with its
    parameters, its main parameter (its weight: the parameter named ...weight with the most dimensions, else the
    first), its group (itself when other recorded modules sit inside it, else its parent path, else itself), and
    `ran`: False for a module the Recorder watched (log.layers) whose output no recorded step holds, in the full rows
    or the statistics (MultiheadAttention's out_proj: its parent uses its weights without calling it)."""
    order = [{"name": layer, "params": [], "output": True} for layer in log.layers]
    by_name = {m["name"]: m for m in order}
    for p in log.params:
        module = p.name.rpartition(".")[0]
        if module not in by_name:
            entry = by_name[module] = {"name": module, "params": [], "output": False}
            at = next((i for i, m in enumerate(order) if m["name"].startswith(module + ".")), len(order))
            order.insert(at, entry)
        by_name[module]["params"].append(p.name)
    names = [m["name"] for m in order]
    for m in order:
        weights = [p for p in m["params"] if p.rpartition(".")[2].endswith("weight")]
        m["main"] = (max(weights, key=lambda p: len(_shape(log, p))) if weights else
                     (m["params"][0] if m["params"] else None))
        holds = any(other.startswith(m["name"] + ".") for other in names) if m["name"] else False
        parent = m["name"].rpartition(".")[0]
        m["group"] = m["name"] if holds or not parent else parent
        m["parent"] = parent or None
        m["ran"] = not m["output"] or any(
            source is not None and (source.has(f"act:{m['name']}") or source.has(f"stats:act:{m['name']}"))
            for source in (log, stats))
        m["weights_used"] = not m["ran"] and bool(m["main"]) and _got_gradient(log, stats, m["main"])   # asked rarely
        m["type"] = getattr(log, "layer_types", {}).get(m["name"].split("#")[0])   # Conv2d, ReLU (None: not kept)
        m["name"] = m["name"] or "(model)"
    return order


def _got_gradient(log, stats, param: str) -> bool:
    """Whether `param` got a finite gradient that is not all 0 at some recorded step."""
    norms = _grad_norms(log, stats, param)
    return any(math.isfinite(v) and v > 0 for v in norms)


def never_ran_note(m: dict) -> str | None:
    """The words for a module that never ran (modules_of's `ran` False): why its block has no output."""
    if m["ran"]:
        return None
    if m["weights_used"]:
        parent = f" ({m['parent']})" if m["parent"] else ""
        return ("never ran: no recorded step called it, yet its weights got gradients — "
                f"its weights are used by its parent's forward{parent}")
    return "never ran: no recorded step called it, and its weights got no gradient" if m["main"] else \
        "never ran: no recorded step called it"


def _grad_norms(log, stats, param: str) -> list[float]:
    if stats is not None and stats.has(f"stats:{param}:grad"):
        return stats.stat(f"{param}:grad", "norm").double().tolist()
    if log.has("param_grad"):
        return torch.linalg.vector_norm(log.param(param, "grad").flatten(1).double(), dim=1).tolist()
    return []


def _series(log, stats, mains: list[tuple[str, str]]) -> dict:
    """log10 of each weight's update:data ratio at every step (every statistics row where there are any, else every
    full row), at most SERIES_POINTS steps evenly spaced."""
    from nn_lesson.lesson.board.scalars import update_to_weight_ratio
    from_stats = stats is not None and all(stats.has(f"stats:{p}:update") for _, p in mains)
    source = stats if from_stats else log
    if not len(source) or (not from_stats and not log.has("param_after")):
        return {"steps": [], "layers": []}
    n = len(source)
    keep = list(range(n)) if n <= SERIES_POINTS else sorted({round(i * (n - 1) / (SERIES_POINTS - 1))
                                                             for i in range(SERIES_POINTS)})
    steps = source.step.tolist()
    layers = []
    for module, p in mains:
        ratio = update_to_weight_ratio(source, p).double()
        layers.append({"name": module, "param": p, "log10": [_log10(float(ratio[i])) for i in keep]})
    return {"steps": [int(steps[i]) for i in keep], "layers": layers}


# ---- one module at one step ----
def _block(m: dict, snap, stats_snap, scale: dict) -> dict:
    params = [_param(p, snap, stats_snap) for p in m["params"]]
    main = next((p for p in params if p["name"] == m["main"]), None)
    block = {"name": m["name"], "group": m["group"], "main": m["main"],
             "shape": main["shape"] if main else [], "params": params,
             "ratio": main["ratio"] if main else None, "grad_norm": main["grad_norm"] if main else None,
             "source": main["source"] if main else None, "never_ran": never_ran_note(m), "type": m["type"],
             "ratio_note": RATIO_UNDEFINED if main and main["ratio"] is None and main["weight_std"] == 0 else None}
    # the dead or saturated share belongs to an activation (ReLU, tanh, sigmoid: no parameters of its own);
    # a layer with weights (a linear head, a convolution) has an output of any sign, and none is asked of it
    block.update(_output(m["name"] if m["output"] else None, snap, stats_snap, share=not m["params"]))
    if block["never_ran"]:
        block["dead_note"] = block["never_ran"]
    if main:
        block["hist_weight_grad"] = main.pop("hist_grad")
        for p in params:
            p.pop("hist_grad", None)
    else:
        block["hist_weight_grad"] = None
    block["bins"] = {
        "ratio": _bin_log(block["ratio"], scale["ratio"]["log10"]),
        "grad_norm": _bin_log(block["grad_norm"], scale["grad_norm"]["log10"]),
        "dead": _bin_linear(block["dead"], (0.0, 1.0)),
    }
    return block


def _param(name: str, snap, stats_snap) -> dict:
    if name in snap.after and name in snap.before:
        before, grad = snap.before[name].double(), snap.grads[name].double()
        update = snap.after[name].double() - before
        w_std, u_std = _std(before), _std(update)
        g_norm = float(torch.linalg.vector_norm(grad)) if grad.numel() else None
        g_std = _std(grad)
        return {"name": name, "shape": list(before.shape), "source": "full",
                "ratio": _div(u_std, w_std), "grad_norm": _num(g_norm), "weight_std": _num(w_std),
                "update_std": _num(u_std), "grad_data": _div(g_std, w_std),
                "hist_grad": _histogram_of(grad, stats_snap.stats.get(f"{name}:grad") if stats_snap else None)}
    if stats_snap is not None and f"{name}:update" in stats_snap.stats and f"{name}:value" in stats_snap.stats:
        value, update = stats_snap.stats[f"{name}:value"], stats_snap.stats[f"{name}:update"]
        grad = stats_snap.stats.get(f"{name}:grad")
        return {"name": name, "shape": None, "source": "statistics",
                "ratio": _div(update["std"], value["std"]), "grad_norm": _num(grad["norm"]) if grad else None,
                "weight_std": _num(value["std"]), "update_std": _num(update["std"]),
                "grad_data": _div(grad["std"], value["std"]) if grad else None,
                "hist_grad": _stat_hist(grad) if grad else None}
    return {"name": name, "shape": None, "source": None, "ratio": None, "grad_norm": None, "weight_std": None,
            "update_std": None, "grad_data": None, "hist_grad": None}


def _output(name: str | None, snap, stats_snap, share: bool = True) -> dict:
    """The output's histogram, its gradient's, and the dead or saturated share (full rows only)."""
    out = {"hist_act": None, "hist_act_grad": None, "dead": None, "dead_kind": None, "dead_note": None,
           "output_shape": None}
    if name is None:
        out["dead_note"] = "its output was not recorded"
        return out
    act = snap.activations.get(name)
    stats = stats_snap.stats if stats_snap is not None else {}
    if act is not None and act.is_floating_point():
        out["output_shape"] = list(act.shape)
        out["hist_act"] = _histogram_of(act, stats.get(f"act:{name}"))
        if not share:
            out["dead_note"] = "a layer with weights: dead and saturated shares are read at its activation"
        else:
            values = act.flatten()
            out["dead_kind"], out["dead"] = dead_share(values[torch.isfinite(values)])
            if out["dead_kind"] is None:
                out["dead_note"] = "its outputs go below 0 and beyond ±1: neither a ReLU nor a tanh or sigmoid"
    elif stats_snap is not None and f"act:{name}" in stats_snap.stats:
        out["hist_act"] = _stat_hist(stats_snap.stats[f"act:{name}"])
        out["dead_note"] = "statistics only at this step: the dead share needs the outputs themselves"
    else:
        out["dead_note"] = "its output was not recorded at this step"
    grad = snap.act_grads.get(name)
    if grad is not None and grad.is_floating_point():
        out["hist_act_grad"] = _histogram_of(grad, stats.get(f"act_grad:{name}"))
    elif stats_snap is not None and f"act_grad:{name}" in stats_snap.stats:
        out["hist_act_grad"] = _stat_hist(stats_snap.stats[f"act_grad:{name}"])
    return out


def dead_share(values: torch.Tensor) -> tuple[str | None, float | None]:
    """("dead", share exactly 0) for an output never below 0 (a ReLU's); ("saturated", share |x| > 0.97) for one
    within [-1, 1] that goes below 0 (a tanh's); ("saturated", share below 0.03 or above 0.97) for one strictly
    inside (0, 1) (a sigmoid's); (None, None) otherwise or when empty."""
    if not values.numel():
        return None, None
    lo, hi = float(values.min()), float(values.max())
    if lo > 0 and hi < 1:
        return "saturated", float(((values < 1 - SATURATED_AT) | (values > SATURATED_AT)).double().mean())
    if lo >= 0:
        return "dead", float((values == DEAD_AT).double().mean())
    if lo >= -1 and hi <= 1:
        return "saturated", float((values.abs() > SATURATED_AT).double().mean())
    return None, None


def _histogram_of(t: torch.Tensor, stat: dict | None) -> dict | None:
    """A tensor's histogram: computed here from every number, unless it is larger than the Recorder's sampled
    statistics start (SAMPLED_ABOVE) and the step has its statistics row; then that row's histogram, which the
    Recorder took from an even sample of the very same numbers (a ResNet-sized step: 100 exact float64 histograms of
    up to a million numbers took 7 s a request)."""
    if stat is not None and t.numel() > SAMPLED_ABOVE:
        shown = _stat_hist(stat)
        if shown is not None:
            return shown
    return histogram(t)


def histogram(t: torch.Tensor) -> dict | None:
    """BINS even buckets from the finite numbers' min to max (torch.histc's convention), with the mean and std."""
    x = t.double().flatten()
    x = x[torch.isfinite(x)]
    if not x.numel():
        return None
    lo, hi = float(x.min()), float(x.max())
    counts = torch.histc(x, bins=BINS, min=lo, max=hi) if hi > lo else torch.zeros(BINS, dtype=x.dtype)
    if hi <= lo:
        counts[0] = x.numel()
    return {"lo": lo, "hi": hi, "counts": [float(c) for c in counts], "mean": float(x.mean()),
            "std": float(x.std(correction=0)), "source": "full"}


def _stat_hist(s: dict) -> dict | None:
    if s is None or not all(math.isfinite(s[k]) for k in ("min", "max")):
        return None
    return {"lo": s["min"], "hi": s["max"], "counts": [_num(float(c)) for c in s["hist"]], "mean": _num(s["mean"]),
            "std": _num(s["std"]), "source": "statistics"}


# ---- numbers ----
def _std(t: torch.Tensor) -> float | None:
    t = t.flatten()
    return float(t.std(correction=0)) if t.numel() else None


def _div(a, b) -> float | None:
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b) or b == 0:
        return None
    return a / b


def _num(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _log10(v: float) -> float | None:
    return math.log10(v) if math.isfinite(v) and v > 0 else None


def _bin_log(v: float | None, log10_range) -> int | None:
    if v is None or v <= 0 or not log10_range:
        return None
    return _bin_linear(math.log10(v), log10_range)


def _bin_linear(v: float | None, value_range) -> int | None:
    """The colour bin (0 .. COLOURS-1) of v on [lo, hi], values beyond the ends in the end bins."""
    if v is None or not math.isfinite(v):
        return None
    lo, hi = value_range
    at = (v - lo) / (hi - lo) if hi > lo else 0.0
    return min(COLOURS - 1, max(0, int(math.floor(at * COLOURS))))
