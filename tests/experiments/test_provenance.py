"""Table provenance: runs from several commits or a dirty tree are refused unless --allow-mixed-commits, which then
lists each run's commit in the caption (experiments.report.provenance, used by every driver)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import glue_ft_vs_lora, table1_commonsense, tsd_figures
from experiments.report.provenance import MixedCommitsError, check_commits, run_commit
from experiments.runs import collect_runs, read_run

OLD, NEW = "1111111aaaaaaa", "2222222bbbbbbb"
TASKS = ("sst2", "rte", "mrpc")


def _two_commit_runs(root: Path, run_writer) -> dict[str, str]:
    """FT and LoRA r=8 on the 3 tasks, seed 0: FT from OLD (clean), LoRA from NEW, its MRPC run dirty."""
    commits = {}
    for method, rank in (("full", None), ("lora", 8)):
        for task in TASKS:
            commit, dirty = (OLD, False) if method == "full" else (NEW, task == "mrpc")
            folder = run_writer(root, method=method, rank=rank, task=task, seed=0, metrics={"accuracy": 0.5},
                                commit=commit, dirty=dirty)
            commits[str(folder.relative_to(root))] = f"{commit} (dirty)" if dirty else commit
    return commits


def test_runs_of_two_commits_are_refused_naming_commits_dirty_runs_and_fix(tmp_path: Path, run_writer, capsys) -> None:
    root = tmp_path / "runs"
    _two_commit_runs(root, run_writer)
    out = tmp_path / "tables"
    assert glue_ft_vs_lora.main(["--runs", str(root), "--out", str(out), "--command", "c"]) == 3
    assert not out.exists()  # nothing written
    err = capsys.readouterr().err
    assert "refusing to build table glue_ft_vs_lora" in err and "come from 2 commit(s)" in err
    assert f"{OLD}: 3 run(s): minilm/full/mrpc/seed0, minilm/full/rte/seed0, minilm/full/sst2/seed0" in err
    assert f"{NEW} (dirty): 1 run(s): minilm/lora-r8/mrpc/seed0" in err
    assert f"{NEW}: 2 run(s): minilm/lora-r8/rte/seed0, minilm/lora-r8/sst2/seed0" in err
    assert "--allow-mixed-commits" in err and "commit (or stash) your changes" in err


def test_allow_mixed_commits_lists_each_runs_commit_in_the_caption(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    commits = _two_commit_runs(root, run_writer)
    out = tmp_path / "tables"
    assert glue_ft_vs_lora.main(["--runs", str(root), "--out", str(out), "--command", "c",
                                 "--allow-mixed-commits"]) == 0
    md = (out / "glue_ft_vs_lora.md").read_text()
    (line,) = [x for x in md.splitlines() if x.startswith("- **Commits**")]
    assert "mixed, built with --allow-mixed-commits" in line
    for run, commit in commits.items():  # every run folder, under its own commit
        group = line.split(f"{commit}: ", 1)[1].split(";")[0]
        assert run in group, (run, commit, line)


def test_one_clean_commit_is_stated_once(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    for task in TASKS:
        run_writer(root, method="full", rank=None, task=task, metrics={"accuracy": 0.5}, commit=NEW)
    out = tmp_path / "tables"
    assert glue_ft_vs_lora.main(["--runs", str(root), "--out", str(out), "--command", "c"]) == 0
    md = (out / "glue_ft_vs_lora.md").read_text()
    assert f"- **Commit**: {NEW} (all 3 run folders, clean work tree)." in md
    assert "**Runtime**: sum of the runs' `runtime_s` 0.6 min (38 s) over 3 run folder(s)" in md


def test_unrecorded_tree_states_and_commits_are_refused(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    copy = run_writer(root, method="full", rank=None, task="sst2", metrics={"accuracy": 0.5}, dirty=None,
                      git_source="SPECTUNE_GIT_COMMIT")
    none = run_writer(root, method="full", rank=None, task="rte", metrics={"accuracy": 0.5}, commit=None)
    c_copy, c_none = run_commit(read_run(copy), root), run_commit(read_run(none), root)
    assert c_copy.state == "tree state not recorded" and "SPECTUNE_GIT_COMMIT" in c_copy.text()
    assert c_none.text() == "commit not recorded"
    assert run_commit(read_run(none), root, assume_commit="feed").text() == (
        "feed (tree state not recorded; from --assume-commit)")
    with pytest.raises(MixedCommitsError, match="not from a clean committed tree"):
        check_commits([c_copy], "t")
    check_commits([c_copy, c_none], "t", allow_mixed_commits=True)  # allowed: no error


def test_a_summary_commit_other_than_the_environments_is_not_proven(tmp_path: Path, run_writer) -> None:
    folder = run_writer(tmp_path / "runs", method="full", rank=None, task="sst2", metrics={"accuracy": 0.5})
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "commit": OLD}))  # finished by another commit
    commit = run_commit(read_run(folder))
    assert commit.commit == OLD and not commit.proven_clean and "environment.json records" in commit.text()


def test_table1_refuses_mixed_commits(tmp_path: Path, run_writer) -> None:
    """The commonsense table (composite runs seen per task) counts each run folder once in the refusal."""
    from tests.experiments.test_table1_commonsense import write_composite_run

    root = tmp_path / "runs"
    write_composite_run(root, method="lora", rank=4, seed=0)
    other = write_composite_run(root, method="lora_dash", rank=4, seed=0)
    env = json.loads((other / "environment.json").read_text())
    (other / "environment.json").write_text(json.dumps({**env, "git": {"commit": NEW, "dirty": True}}))
    (other / "summary.json").write_text(json.dumps({**json.loads((other / "summary.json").read_text()),
                                                    "commit": NEW}))
    with pytest.raises(MixedCommitsError, match=r"its 2 run folder\(s\) come from 2 commit\(s\)"):
        table1_commonsense.make_table(collect_runs(root), str(root), "cmd")
    table = table1_commonsense.make_table(collect_runs(root), str(root), "cmd", allow_mixed_commits=True)
    assert table.provenance.mixed and len(table.provenance.commits) == 2


def test_tsd_figures_refuse_mixed_commits(tmp_path: Path, run_writer) -> None:
    root = tmp_path / "runs"
    for rank, commit in ((8, OLD), (16, NEW)):
        folder = run_writer(root, method="lora", rank=rank, task="sst2", metrics={"accuracy": 0.5}, commit=commit)
        events = [{"event": "tsd", "step": s, "recall": 0.5, "accuracy": 0.25} for s in (4, 8)]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    out = tmp_path / "fig"
    assert tsd_figures.main(["--runs", str(root), "--out", str(out)]) == 3
    assert tsd_figures.main(["--runs", str(root), "--out", str(out), "--allow-mixed-commits"]) == 0
    data = json.loads((out / "tsd_overlap_over_training.json").read_text())
    assert data["run_commits"] == {"minilm/lora-r8/sst2/seed0": OLD, "minilm/lora-r16/sst2/seed0": NEW}
    assert "mixed, built with --allow-mixed-commits" in data["caption"]
