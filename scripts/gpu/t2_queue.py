"""Transformer²'s tables at GPU scale (issue 10) as GPU queue lines: one run per line, ``name<TAB>command``, the
format of scripts/gpu/tables_gpu.sh's queue (``xargs -P`` over the lines in order, each command run from the
source root with its own timeout), the same runs ``make reproduce-t2-table1 reproduce-t2-table2 SCALE=gpu SEEDS=3``
makes one at a time.

Usage (from the repository root, or with it on PYTHONPATH)::

    python3 scripts/gpu/t2_queue.py                # seeds 0 1 2
    python3 scripts/gpu/t2_queue.py --seeds "0"

Order: Table 1's SVF experts (every seed), Table 2's classification expert, Table 1's LoRA runs, the base rows of
both tables, the adapt results (per seed: few_shot, prompt, cls_expert), LoRA scored on the unseen tasks. Lines that
read other runs (adapt, LoRA on an unseen task) wait for them inside their slot (``bash scripts/gpu/t2_after.sh
<run folders> -- <command>``). The training lines are the grids' cells (``experiments.grids``) as single-cell
multiruns; the scoring and adapt lines are the Makefile's (``T2_ADAPT_gpu`` read from the Makefile).
conf/experiment/t2_table1_gpu.yaml's header estimates the device time of this queue.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

T1, T2 = "t2_table1_gpu", "t2_table2_gpu"
RUNS1, RUNS2 = f"runs/{T1}", f"runs/{T2}"  # runs/<experiment_name>, as the Makefile's T2_RUNS1 / T2_RUNS2
MODEL = "smollm2"
SEEN = ("gsm8k", "mbpp", "arc_easy")
UNSEEN = ("math", "humaneval", "arc_challenge")
DOMAIN = {"math": "gsm8k", "humaneval": "mbpp", "arc_challenge": "arc_easy"}  # Table 2's LoRA row
SVF_LABEL, LORA_LABEL = "svf-official-mlp", "lora-r16"
STRATEGIES = ("few_shot", "prompt", "cls_expert")  # the longest first; cls_expert also waits for its classifier
AFTER = "bash scripts/gpu/t2_after.sh"


def makefile_variable(name: str, makefile: Path = REPO_ROOT / "Makefile") -> list[str]:
    """The words of a plain ``NAME = ...`` Makefile variable (continuation lines joined)."""
    text = makefile.read_text().replace("\\\n", " ")
    found = re.search(rf"^{re.escape(name)}\s*=(.*)$", text, re.M)
    if found is None:
        raise SystemExit(f"error: {makefile} has no variable {name}")
    return found.group(1).split()


def grid_cells(experiment: str) -> list[tuple[str, list[str]]]:
    """(grid, the cell's overrides without experiment= / +sweep=) of every cell, in make's order."""
    from experiments import grids

    return [(g.name, [o for o in job if o not in g.base_overrides]) for g in grids.load_grids(experiment)
            for job in g.cells()]


def train_line(experiment: str, grid: str, overrides: Sequence[str], seed: int) -> tuple[str, str]:
    task = next((o.split("=", 1)[1].split("/")[-1] for o in overrides if o.startswith("task=")), "")
    name = f"{experiment}_{grid}_{task}_seed{seed}"
    cmd = ["python3", "-m", "spectune.train", "-m", f"experiment={experiment}", f"+sweep={experiment}/{grid}",
           *overrides, f"seed={seed}"]
    return name, " ".join(cmd)


def queue(seeds: Sequence[int]) -> list[tuple[str, str]]:
    """The queue's (name, command) lines in order."""
    cells = {e: grid_cells(e) for e in (T1, T2)}
    adapt = makefile_variable("T2_ADAPT_gpu")
    lines: list[tuple[str, str]] = []
    lines += [train_line(T1, g, o, s) for s in seeds for g, o in cells[T1] if g == "svf"]
    lines += [train_line(T2, g, o, s) for s in seeds for g, o in cells[T2]]
    lines += [train_line(T1, g, o, s) for s in seeds for g, o in cells[T1] if g != "svf"]
    for experiment, runs, tasks in ((T1, RUNS1, SEEN), (T2, RUNS2, UNSEEN)):
        lines += [(f"{experiment}_base_{t}_seed{s}",
                   f"python3 -m spectune.training.score_task --experiment {experiment} --runs {runs} model={MODEL} "
                   f"task=t2/{t} seed={s}") for s in seeds for t in tasks]
    for s in seeds:
        experts = [f"{RUNS1}/{MODEL}/{SVF_LABEL}/t2_{t}/seed{s}" for t in SEEN]
        cls = f"{RUNS2}/{MODEL}/{SVF_LABEL}/t2_cls/seed{s}"
        for strategy in STRATEGIES:
            for t in UNSEEN:
                deps = [*experts, *([cls] if strategy == "cls_expert" else [])]
                cmd = ["python3", "-m", "spectune.adapt", f"strategy={strategy}", f"model={MODEL}", f"task=t2/{t}",
                       f"seed={s}", f"experts=[{','.join(experts)}]",
                       *([f"cls_expert={cls}"] if strategy == "cls_expert" else []), f"out_dir={RUNS2}/adapt", *adapt]
                lines.append((f"{T2}_adapt_{strategy}_{t}_seed{s}", f"{AFTER} {' '.join(deps)} -- {' '.join(cmd)}"))
    for s in seeds:
        for t in UNSEEN:
            lora = f"{RUNS1}/{MODEL}/{LORA_LABEL}/t2_{DOMAIN[t]}/seed{s}"
            lines.append((f"{T2}_lora-from-{DOMAIN[t]}_{t}_seed{s}",
                          f"{AFTER} {lora} -- python3 -m spectune.training.score_task --experiment {T2} --runs {RUNS2} "
                          f"--run {lora} model={MODEL} task=t2/{t} seed={s}"))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 scripts/gpu/t2_queue.py", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", default="0 1 2", help="seeds, space separated (default: 0 1 2)")
    args = p.parse_args(argv)
    for name, cmd in queue([int(s) for s in args.seeds.split()]):
        print(f"{name}\t{cmd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
