"""The new run's folder, claimed before any training; a name that cannot be used is an argparse error."""

from __future__ import annotations

import argparse

from nn_lesson.lesson.run.folder import RunClaim, RunDirError, claim_run


def run_folder(parser: argparse.ArgumentParser, args: argparse.Namespace, default_name: str) -> RunClaim:
    """Claim the new run's folder under --logdir before any training (argparse error, exit 2)."""
    try:
        return claim_run(args.logdir, args.name, default_name, args.overwrite)
    except RunDirError as err:
        parser.error(str(err))
