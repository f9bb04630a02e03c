"""Text a user wrote (student names, file names) made inert wherever it is shown.

In markdown every character that markdown, its tables or HTML would read as syntax becomes a numeric
character reference: a name like `a|b`, `[x](http://…)` or `<img src=…>` shows as written and does
nothing. Characters that could move a terminal's cursor, reorder or hide text become U+FFFD: chosen by
Unicode category, not by a list, so a mark a list forgot (U+061C, a new format character) is caught too.
"""

from __future__ import annotations

import html
import re
import unicodedata

_MARKUP = {c: f"&#{ord(c)};" for c in "&<>|*_`[]()\\#!~{}\"'"}
# Cc controls, Cf format characters (every bidirectional embedding, override, isolate and mark, the
# zero-width characters), Zl and Zp line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})
REPLACEMENT = "\ufffd"


def _replace_unsafe(text: str, keep: str = "") -> str:
    if text.isprintable():  # fast path: every unsafe category is non-printable to Python
        return text
    return "".join(REPLACEMENT if c not in keep and unicodedata.category(c) in _UNSAFE else c for c in text)


def inert(text: str) -> str:
    """Printable text on one line: control, format and bidi characters (newlines too) replaced by U+FFFD."""
    return _replace_unsafe(text)


def md(text: str) -> str:
    """User text for a markdown page or table cell: shown as written on one line, never read as markup."""
    return "".join(_MARKUP.get(c, c) for c in inert(re.sub(r"\s*[\r\n]+\s*", " ", text)))


def terminal(page_text: str) -> str:
    """A whole page for the terminal: escaped user text back to its characters, control characters made
    inert, the page's own line breaks kept."""
    return _replace_unsafe(html.unescape(page_text), keep="\n\t")
