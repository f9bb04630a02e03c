"""The two layers: the story a beginner reads (11 pages, within 150 words of prose each, no expert terms,
every term defined at its first use) and what is under the hood (printed by --deep, tagged in TensorBoard)."""

from __future__ import annotations

import re

import pytest

from conftest import run_cli
from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.pages import lesson_pages
from nn_lesson.lesson.story.terminal import plain

EXPERT_TERMS = ("log-odds", "vmap", "torch.func", "cs231n", "float32", "float64", "dot product", "first order",
                "first-order", "logistic regression", "seed lesson")
DEFINED = ("confidence", "loss", "step", "learning rate", "epoch", "gradient", "weight")


def prose_words(story: str) -> int:
    """Words outside the tables: every whitespace-separated token of a line that is not a table row."""
    return sum(len(line.split()) for line in story.splitlines() if not line.startswith("|"))


def test_eleven_pages_in_the_lessons_order(teaching_runs):
    for name, (_, pages) in teaching_runs.items():
        assert [t[:2] for t in pages] == [f"{k:02d}" for k in range(1, 12)], name


@pytest.mark.parametrize("name", ["default", "lr 5", "lr 50", "lr 1e30 relu", "relu random seed 7", "tanh", "mse",
                                  "batch 3", "lr 0.001"])
def test_story_pages_are_short_and_plain(teaching_runs, name):
    _, pages = teaching_runs[name]
    for title, p in pages.items():
        assert prose_words(p.story) <= 150, (name, title, prose_words(p.story))
        found = [t for t in EXPERT_TERMS if t in p.story.lower()]
        assert not found, (name, title, found)


def test_every_term_is_defined_where_the_story_first_uses_it(teaching_runs):
    """The first time the story says a term, it says it in bold, beside its meaning."""
    _, pages = teaching_runs["default"]
    story = "\n\n".join(p.story for p in pages.values())
    for term in DEFINED:
        first = re.search(rf"\b{term}s?\b", story, re.I)
        assert first, term
        assert story[max(0, first.start() - 2):first.start()] == "**", (term, story[first.start() - 80:first.end() + 20])


def test_no_table_ends_in_an_empty_header(teaching_runs):
    """Every table's header names its last column (the terminal would print a nameless one)."""
    for name, (_, pages) in teaching_runs.items():
        for p in pages.values():
            for text in (p.story, p.deep):
                lines = text.splitlines()
                for i, line in enumerate(lines):
                    if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
                        assert line.rstrip("|").rsplit("|", 1)[1].strip(), (name, p.title, line)


@pytest.fixture(scope="module")
def both_prints(tmp_path_factory):
    """The default lesson printed by the real CLI, plain and with --deep, from the same settings."""
    root = tmp_path_factory.mktemp("layers")
    story = run_cli("--name", "story", "--logdir", str(root / "runs"), cwd=root)
    deep = run_cli("--name", "deep", "--deep", "--logdir", str(root / "runs"), cwd=root)
    assert story.returncode == 0 and deep.returncode == 0, story.stderr + deep.stderr
    return RunRecord.load(root / "runs" / "deep" / "snapshots.npz"), story.stdout, deep.stdout


def test_deep_prints_every_depth_and_the_default_none(both_prints):
    record, story, deep = both_prints
    pages = lesson_pages(record)
    for p in pages:
        assert plain(p.story) in story and plain(p.story) in deep, p.title
        if p.deep:
            assert plain(p.deep) in deep, p.title
            assert plain(p.deep) not in story, p.title
    for element in ("torch.func.vmap(grad(...))", "gᵢ · g", "first order", "Check without calculus",
                    "(L(w + ε) − L(w − ε)) / 2ε", "float64", "float32", "log-odds", "logistic regression",
                    "ln 2", "Why cross-entropy?", "standard deviation", "mean loss of the epoch's steps"):
        assert element in deep, element
        assert element not in story or element == "mean loss of the epoch's steps", element
    assert deep.count("under the hood") == sum(1 for p in pages if p.deep)


def test_the_terminal_draws_tables_not_markdown(both_prints):
    _, story, deep = both_prints
    for out in (story, deep):
        assert not re.search(r"^\|", out, re.M) and "|---|" not in out
    assert re.search(r"^student +PASS confidence +FAIL confidence +guess +truth +right\?$", story, re.M)


def test_each_loss_figure_has_one_name(both_prints):
    _, story, _ = both_prints
    assert re.search(r"^epoch +1/60 +mean loss of the epoch's steps \d\.\d{4}$", story, re.M)
    assert "loss on all training students after the epoch" in story
    assert "loss after this step" in story
    for old in ("mean loss of its steps", "loss, training students", "loss, held-out"):
        assert old not in story, old


def test_help_explains_deep(tmp_path):
    help_text = " ".join(run_cli("--help", cwd=tmp_path).stdout.split())
    assert "--deep print every page with its 'under the hood' section" in help_text
    assert "nn-lesson --deep" in help_text
