"""The two bits of markdown every page builds: a table, and a list of students' names (escaped)."""

from __future__ import annotations

from nn_lesson.lesson.story.escape import md


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def who(names: list[str]) -> str:
    """'Sarah', 'Sarah and Mike', 'Sarah, Mike and Emma', or 'Sarah, Mike and 6 more' for a big batch."""
    names = [md(n) for n in names]
    if len(names) <= 3:
        return " and ".join(names) if len(names) <= 2 else f"{names[0]}, {names[1]} and {names[2]}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def and_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c': items already escaped."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
