"""Command-line options every driver shares: the command for the caption, the wall-time start, mixed commits; the
file stem of a driver's output at a scale (:func:`output_name`)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from experiments.report.provenance import ALLOW_FLAG, MixedCommitsError

REFUSED = 3  # exit status of a driver that refused mixed commits
# Scales whose outputs keep the driver's own file stem: smoke (the committed smoke tables and figures keep their names)
# and paper (its tables go to a folder of their own, results/tables/paper).
PLAIN_NAME_SCALES = ("smoke", "paper")


def output_name(name: str, scale: str | None) -> str:
    """The file stem of a driver's output at ``scale``: ``name`` at smoke and paper scale
    (:data:`PLAIN_NAME_SCALES`), ``<name>_<scale>`` at any other (``table2_glue_gpu``: beside the smoke outputs in
    results/tables and results/figures)."""
    return name if scale is None or scale in PLAIN_NAME_SCALES else f"{name}_{scale}"


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
