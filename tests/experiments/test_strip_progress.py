"""scripts/gpu/strip_progress.py: tqdm bars dropped from a log, other text kept; --collapse keeps the first 80 lines
of a repeated warning and counts the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("strip_progress", REPO_ROOT / "scripts" / "gpu" / "strip_progress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bars_go_and_text_stays():
    sp = load()
    text = "start\n\rtrain:  10%|#         | 1/10 [00:01<00:09]\rtrain: 100%|##########| 10/10 [00:10<00:00]\nend\n"
    assert sp.strip(text).rstrip("\n") == "start\nend"


def test_collapse_keeps_the_first_lines_of_a_repeated_warning_and_counts_the_rest(tmp_path, capsys):
    sp = load()
    lines = ["head"] + [f"W wrap.py:1026] traceback line {i}" for i in range(200)] + ["[step_time] row done", "tail"]
    log = tmp_path / "run.log"
    log.write_text("\n".join(lines) + "\n")
    assert sp.main(["--collapse", "wrap.py:1026]", str(log)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "head" and out[1:81] == lines[1:81]
    assert "[step_time] row done" in out and "tail" in out
    assert sum("wrap.py:1026]" in line and "traceback" in line for line in out) == 80
    assert out[-1] == "[strip_progress.py --collapse: 120 more lines containing 'wrap.py:1026]' removed]"
