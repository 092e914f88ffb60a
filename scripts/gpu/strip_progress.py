"""Drop tqdm progress bars from a log, keep everything else (for results/gpu/*.log).

    python scripts/gpu/strip_progress.py [--collapse TEXT] IN.log [IN2.log ...] > OUT.log

A bar is ``[description: ]NN%|<bar>| n/N [<timing>]``; tqdm redraws it after a carriage return, so every
``\\r``-separated piece of a line is kept only when something other than bars remains of it. Several inputs are
concatenated, each under a ``==== <name>`` header. ``--collapse TEXT`` keeps the first 80 lines that contain TEXT
(a repeated warning's traceback, once) and replaces every later one by a count at the end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BAR = re.compile(r"[^\r\n|]*?\s*\d+%\|[^|\r\n]*\|[^\]\r\n]*\]")


def strip(text: str) -> str:
    out = []
    for line in text.split("\n"):
        pieces = [BAR.sub("", p).rstrip() for p in line.split("\r")]
        pieces = [p for p in pieces if p.strip()]
        if pieces or not line.strip():
            out.extend(pieces or [""])
    return "\n".join(out) + "\n"


def collapse(text: str, marker: str, keep: int = 80) -> str:
    """Keep the first ``keep`` lines containing ``marker`` (one warning's traceback); drop the later ones, counted."""
    out, seen = [], 0
    for line in text.split("\n"):
        if marker in line:
            seen += 1
            if seen > keep:
                continue
        out.append(line)
    if seen > keep:
        out.append(f"[strip_progress.py --collapse: {seen - keep:,} more lines containing {marker!r} removed]")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    marker = None
    if argv[:1] == ["--collapse"]:
        marker, argv = argv[1], argv[2:]
    several = len(argv) > 1
    for path in argv:
        if several:
            sys.stdout.write(f"==== {Path(path).name}\n")
        with open(path, newline="", errors="replace") as f:  # newline="": keep the bars' carriage returns
            text = strip(f.read())
        sys.stdout.write(collapse(text, marker) if marker else text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
