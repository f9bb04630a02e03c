"""The lesson's markdown pages as plain terminal text (same numbers, same digits): bold and code marks
dropped, tables drawn as aligned columns."""

from __future__ import annotations

import re

from nn_lesson.lesson.story.escape import terminal

_NUMBER = re.compile(r"[+\-−]?\d[\d.,e+\-]*%?")


def plain(markdown: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    out, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|") and line.endswith("|"):
            block.append(line)
            continue
        if block:
            out += aligned(block)
            block = []
        out.append(terminal(line))  # user text, escaped for markdown, shown as written but inert
    return "\n".join(out[:-1])


def cells(line: str) -> list[str]:
    """A markdown table row's cells. User text in a cell is escaped (a '|' is '&#124;'), so '|' splits."""
    return [terminal(c.strip()) for c in line.strip()[1:-1].split("|")]


def aligned(block: list[str]) -> list[str]:
    """A markdown table as columns padded to one width: the header, a rule, then the rows; numbers
    right-aligned so their digits line up."""
    rows = [cells(line) for line in block if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line)]
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    sizes = [max(len(r[c]) for r in rows) for c in range(width)]

    def line(row: list[str]) -> str:
        return "  ".join(cell.rjust(size) if _NUMBER.fullmatch(cell) else cell.ljust(size)
                         for cell, size in zip(row, sizes)).rstrip()
    return [line(rows[0]), "  ".join("─" * size for size in sizes)] + [line(r) for r in rows[1:]]


def page(title: str, markdown: str) -> str:
    heading = f"── {terminal(title)} "
    return heading + "─" * max(0, 78 - len(heading)) + "\n" + plain(markdown) + "\n"


def under_the_hood(markdown: str) -> str:
    """A page's depth, printed after it by nn-lesson --deep."""
    return "   ╌╌ under the hood ╌╌\n" + plain(markdown) + "\n"
