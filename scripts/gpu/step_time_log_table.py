"""Rebuild the compiled step-time table from the lines ``benchmarks/step_time.py`` printed, when its JSON was lost
(the f3040cb H200 run failed writing it after measuring every compiled row; ``tf32_setting`` fixes the cause).

    python scripts/gpu/step_time_log_table.py results/gpu/batch_x2_main_f3040cb.log > OUT.md

Ratios are to the ``floor`` row of the same log; targets are issue 11's (× compiled floor, peak − floor GiB).
"""

from __future__ import annotations

import re
import sys

TARGETS = {"lora": (1.10, 1.5), "lora_dash": (1.10, 1.5), "plora": (1.10, 1.5), "svf": (1.20, 2.5)}
LINE = re.compile(r"\[step_time\] (\w+)\+compiled: ([\d.]+) ms/step, peak ([\d,]+) MiB, first step ([\d.]+) s")


def table(log: str) -> list[str]:
    rows = [(n, float(ms), int(peak.replace(",", "")), first) for n, ms, peak, first in LINE.findall(log)]
    floor = next((r for r in rows if r[0] == "floor"), None)
    if floor is None:
        raise SystemExit("no '[step_time] floor+compiled' line in the log")
    out = ["| row (compiled) | ms / step | × compiled floor | peak MiB | peak − floor GiB | first step s | "
           "target (× floor, + GiB) | met |", "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, ms, peak, first in rows:
        ratio, extra = ms / floor[1], (peak - floor[2]) / 1024
        t = TARGETS.get(name)
        met = "—" if t is None else ("yes" if ratio <= t[0] and extra <= t[1] else "no")
        goal = "—" if t is None else f"≤ {t[0]:.2f}, ≤ +{t[1]}"
        out.append(f"| {name} | {ms:.2f} | {ratio:.3f} | {peak:,} | {extra:+.2f} | {first} | {goal} | {met} |")
    return out


if __name__ == "__main__":
    print("\n".join(table(open(sys.argv[1]).read())))
