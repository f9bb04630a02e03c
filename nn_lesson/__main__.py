"""python -m nn_lesson, and the nn-lesson command: Ctrl-C and SIGTERM are handled from the first moment,
before torch is imported, so stopping early is one line on stderr, never a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    from nn_lesson.lesson.run.stopping import exit_at_once_on_signals
    exit_at_once_on_signals()  # until a run is claimed; then the CLI keeps what was captured
    from nn_lesson.lesson.cli import main as cli_main
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
