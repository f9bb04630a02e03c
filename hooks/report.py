"""Report: what a Recorder saw, so a user knows what the log holds and what it does not.

    rec.report()          # several lines: modules and calls, skipped forwards and why, what was not seen
    rec.report().line()   # one line, printed by the CLI at the end of a run
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nn_lesson.hooks.policy import ordinal

USED_BY_PARENT = "not called, but their weights got gradients: their parent's forward uses the weights directly"


@dataclass(frozen=True)
class Report:
    steps: int                                   # optimizer steps taken while recording
    recorded: int                                # rows in the log
    every: int                                   # the policy's k: steps 0, k, 2k, ... are kept
    calls: dict[str, int] = field(default_factory=dict)     # leaf module -> calls per recorded forward (most seen)
    never_ran: tuple[str, ...] = ()              # leaf modules no recorded forward called
    skipped: dict[str, int] = field(default_factory=dict)   # reason a forward was not recorded -> how many
    not_seen: tuple[str, ...] = ()               # what the hooks could not see
    notes: tuple[str, ...] = ()                  # what the Recorder decided on its own (the memory budget)
    stats_rows: int = 0                          # rows of statistics of every step (rec.stats_log), if kept
    # ... of which the weights got gradients all the same: the parent's forward uses them without calling the
    # module (nn.MultiheadAttention reads out_proj.weight and .bias directly)
    used_by_parent: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every step the policy keeps was recorded and nothing was left unseen."""
        if self.stats_rows:
            return self.stats_rows == self.steps and not self.not_seen
        return self.recorded == -(-self.steps // self.every) and not self.not_seen

    def line(self) -> str:
        kept = f"{self.recorded} of {self.steps} steps recorded"
        if self.every > 1:
            kept += f" (every {ordinal(self.every)})"
        twice = [f"{n} ×{c}" for n, c in self.calls.items() if c > 1]
        parts = [kept, f"{len(self.calls)} modules ran" + (f" ({', '.join(twice)} per forward)" if twice else "")]
        if self.skipped:
            parts.append(f"{sum(self.skipped.values())} forwards skipped ("
                         + ", ".join(f"{n} {why.split(':')[0]}" for why, n in self.skipped.items()) + ")")
        if self.never_ran:
            parts.append(f"never ran: {', '.join(self.never_ran)}" + (
                f" ({', '.join(self.used_by_parent)}: {USED_BY_PARENT})" if self.used_by_parent else ""))
        parts.append("not seen: " + ("; ".join(self.not_seen) if self.not_seen else "nothing"))
        if self.stats_rows:
            parts.insert(1, f"statistics of {self.stats_rows} steps")
        parts += self.notes
        return "recorder: " + "; ".join(parts)

    def __str__(self) -> str:
        lines = [f"Recorder report: {self.recorded} of {self.steps} optimizer steps recorded"
                 + (f" (policy keeps every {ordinal(self.every)})" if self.every > 1 else "")]
        lines.append("modules that ran (calls per recorded forward; a second call is recorded as name#1, ...):")
        lines += [f"  {name}: {calls}" for name, calls in self.calls.items()] or ["  none"]
        if self.never_ran:
            lines.append("modules that never ran in a recorded forward: " + ", ".join(self.never_ran))
            if self.used_by_parent:
                lines.append(f"  {', '.join(self.used_by_parent)}: {USED_BY_PARENT} (nn.MultiheadAttention does "
                             "this with out_proj), so they have no outputs to record; their weights, gradients "
                             "and updates are in the log")
        lines.append("forwards skipped, and why:")
        lines += [f"  {n} × {why}" for why, n in self.skipped.items()] or ["  none"]
        lines.append("could not be seen:")
        lines += [f"  {what}" for what in self.not_seen] or ["  nothing"]
        if self.stats_rows:
            lines.append(f"statistics of every step: {self.stats_rows} rows (rec.stats_log)")
        lines += self.notes
        return "\n".join(lines)
