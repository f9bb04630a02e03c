"""The lesson's 11 pages, generated from a run record: every number is read from a tensor, every sentence
about the run chosen by a check on its numbers (lesson.story.claims).

Pages: 01 the challenge, 02 the training data, 03 the starting weights, 04/06/08 the network meets the
students of steps 0, 1, 2, 05/07/09 it learns from them, 10 the final test on held-out students, 11 what it
learned. Each page has two layers (lesson.story.page.Page): the story, short and plain, and what is under the
hood. The chain rule by hand for step 0 is the depth of page 05, where the network first learns.
"""

from __future__ import annotations

from nn_lesson.lesson.run.record import RunRecord
from nn_lesson.lesson.story.chain_rule_page import chain_rule_depth
from nn_lesson.lesson.story.intro_pages import challenge, starting_weights, training_data
from nn_lesson.lesson.story.markdown import table, who  # noqa: F401  (table: lab and bridge pages import it here)
from nn_lesson.lesson.story.page import Page
from nn_lesson.lesson.story.recap_pages import final_test, what_it_learned
from nn_lesson.lesson.story.step_pages import learns, meets

STOPPED = "Training stopped before this step."


def lesson_pages(record: RunRecord) -> list[Page]:
    """The 11 pages, 01..11, in the lesson's order (the Lesson tab maps page i to a recorded row by position)."""
    pages = [challenge(record), training_data(record), starting_weights(record)]
    for k in range(3):
        if k < len(record.log):
            pages += [meets(record, k), learns(record, k, chain_rule_depth(record, k) if k == 0 else "")]
        else:
            pages += [Page(f"{4 + 2 * k:02d} (no step {k})", STOPPED, ""),
                      Page(f"{5 + 2 * k:02d} (no step {k})", STOPPED, "")]
    return pages + [final_test(record), what_it_learned(record)]

