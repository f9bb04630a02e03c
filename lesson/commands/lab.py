"""nn-lesson lab: the lesson once per learning rate into one log directory, then a page comparing them.
Arguments arrive parsed and checked by lesson.cli."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nn_lesson.data import DataError, load_students
from nn_lesson.lesson.commands.claim import run_folder
from nn_lesson.lesson.commands.lesson import lesson_files
from nn_lesson.lesson.run.settings import LessonConfig, check_steps
from nn_lesson.lesson.run.stopping import Stopped, exit_code, signals_deferred, stopping_by_signal
from nn_lesson.lesson.story.escape import inert


def lab_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        students = load_students(args.data)
    except DataError as err:
        print(f"nn-lesson lab: error: {inert(str(err))}", file=sys.stderr)
        return 2
    too_long = check_steps(args.epochs, LessonConfig.batch_size, len(students.training()))
    if too_long:  # every run of the lab has this many steps: refused before the first one trains
        parser.error(f"argument --epochs: {too_long}")
    from nn_lesson.lesson.board.events import EventWriter
    from nn_lesson.lesson.run.folder import write_run
    from nn_lesson.lesson.run.train import Diverged, train
    from nn_lesson.lesson.story.lab import lab_page
    from nn_lesson.lesson.story.terminal import page

    prefix = args.name or "lab"
    lrs = [lr for group in args.lr for lr in group]  # --lr 0.01 0.5 --lr 5: every value, in order
    records = []
    with stopping_by_signal():
        try:
            for lr in lrs:
                config = LessonConfig(lr=lr, epochs=args.epochs, loss=args.loss, activation=args.activation)
                claim = run_folder(parser, argparse.Namespace(logdir=args.logdir, name=None, overwrite=False),
                                   f"{prefix}-{config.run_name()}")
                try:
                    record = train(config, students)
                except Diverged as err:
                    record = err.record
                except BaseException:
                    claim.release()
                    raise

                with signals_deferred():
                    path = write_run(claim, lesson_files(record))
                records.append(record)
                print(f"lr {lr:g}: {path}", flush=True)
        except Stopped as err:
            print(f"nn-lesson lab: stopped by {err}; the runs above are complete", file=sys.stderr)
            return exit_code(err)
        title, markdown = lab_page(records)
        summary = run_folder(parser, argparse.Namespace(logdir=args.logdir, name=None, overwrite=False),
                             f"{prefix}-comparison")

        def fill_page(folder: Path) -> None:
            with EventWriter(folder) as events:
                events.text(f"lab/{title}", markdown)
        with signals_deferred():
            path = write_run(summary, fill_page)
    print(page(title, markdown))
    from nn_lesson.lesson.board.serve import view_hint
    print(f"comparison: {path}\nview it:   {view_hint(args.logdir)}")
    return 0
