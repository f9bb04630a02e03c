"""One lesson page in its two layers: the story a beginner reads, and what is under the hood."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    title: str   # "04 the network meets Sarah": the page's number, then what it is about
    story: str   # markdown: one idea in plain words, every term defined at its first use
    deep: str    # markdown: the depth behind it (per-student effects, the chain rule, log-odds, ...); may be ""
