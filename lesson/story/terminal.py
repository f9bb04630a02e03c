"""The lesson's markdown pages as plain terminal text (same numbers, same digits)."""

from __future__ import annotations

import re


def plain(markdown: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return "\n".join(line for line in text.splitlines() if not re.fullmatch(r"\|(---\|)+", line))


def page(title: str, markdown: str) -> str:
    heading = f"── {title} "
    return heading + "─" * max(0, 78 - len(heading)) + "\n" + plain(markdown) + "\n"
