"""The lesson's markdown pages as plain terminal text (same numbers, same digits)."""

from __future__ import annotations

import re

from nn_lesson.lesson.story.escape import terminal


def plain(markdown: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    lines = [line for line in text.splitlines() if not re.fullmatch(r"\|(---\|)+", line)]
    return terminal("\n".join(lines))  # user text, escaped for markdown, shown as written but inert


def page(title: str, markdown: str) -> str:
    heading = f"── {terminal(title)} "
    return heading + "─" * max(0, 78 - len(heading)) + "\n" + plain(markdown) + "\n"
