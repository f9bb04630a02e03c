"""Text a user wrote (student names, file names) made inert wherever it is shown.

In markdown every character that markdown, its tables or HTML would read as syntax becomes a numeric
character reference: a name like `a|b`, `[x](http://…)` or `<img src=…>` shows as written and does
nothing. Control characters, which could move a terminal's cursor or hide text, become U+FFFD.
"""

from __future__ import annotations

import html
import re

_MARKUP = {c: f"&#{ord(c)};" for c in "&<>|*_`[]()\\#!~{}\"'"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """Printable text on one line: control and bidi characters (newlines too) replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)


def md(text: str) -> str:
    """User text for a markdown page or table cell: shown as written on one line, never read as markup."""
    return "".join(_MARKUP.get(c, c) for c in inert(re.sub(r"\s*[\r\n]+\s*", " ", text)))


def terminal(page_text: str) -> str:
    """A whole page for the terminal: escaped user text back to its characters, control characters made
    inert, the page's own line breaks kept."""
    return _CONTROL_BUT_LINES.sub("\ufffd", html.unescape(page_text))
