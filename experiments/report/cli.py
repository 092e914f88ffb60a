"""Command-line options every driver shares: the command for the caption, the wall-time start, mixed commits."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from experiments.report.provenance import ALLOW_FLAG, MixedCommitsError

REFUSED = 3  # exit status of a driver that refused mixed commits


def add_provenance_args(parser: argparse.ArgumentParser, started: bool = True) -> None:
    """``--command``, ``--allow-mixed-commits`` and (``started``) ``--started``."""
    parser.add_argument("--command", default=None,
                        help="the exact command that produced the output, for the caption (default: this command line)")
    parser.add_argument(ALLOW_FLAG, dest="allow_mixed_commits", action="store_true",
                        help="build from runs of several commits or of a dirty tree (refused by default); the caption "
                             "then lists each run's commit")
    if started:
        parser.add_argument("--started", type=float, default=None,
                            help="Unix time at which the command started (make passes it): the caption states the "
                                 "wall time up to the output")


def command_of(args: argparse.Namespace, module: str, argv: Sequence[str]) -> str:
    """``--command`` if given, else this command line."""
    return args.command or shlex.join(["python", "-m", module, *argv])


def wall_s(args: argparse.Namespace) -> float | None:
    """Seconds since ``--started`` (None without it)."""
    started = getattr(args, "started", None)
    return None if started is None else max(0.0, time.time() - started)


def refuse(err: MixedCommitsError) -> int:
    """Print the refusal to stderr; return :data:`REFUSED`."""
    print(f"error: {err}", file=sys.stderr)
    return REFUSED
