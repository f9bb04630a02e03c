"""python -m nn_lesson: the same as the nn-lesson command."""

import sys

from nn_lesson.lesson.cli import main

sys.exit(main())
