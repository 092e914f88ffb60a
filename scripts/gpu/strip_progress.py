"""Drop tqdm progress bars from a log, keep everything else (for results/gpu/*.log).

    python scripts/gpu/strip_progress.py IN.log [IN2.log ...] > OUT.log

A bar is ``[description: ]NN%|<bar>| n/N [<timing>]``; tqdm redraws it after a carriage return, so every
``\\r``-separated piece of a line is kept only when something other than bars remains of it. Several inputs are
concatenated, each under a ``==== <name>`` header.
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


def main(argv: list[str]) -> int:
    several = len(argv) > 1
    for path in argv:
        if several:
            sys.stdout.write(f"==== {Path(path).name}\n")
        with open(path, newline="", errors="replace") as f:  # newline="": keep the bars' carriage returns
            sys.stdout.write(strip(f.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
