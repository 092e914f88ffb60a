"""The analysis notebooks run top to bottom on the committed smoke-scale run folders and figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tsd_change_rates_notebook_executes() -> None:
    import nbformat
    from nbclient import NotebookClient

    runs = REPO / "results/runs/tsd_tracking"
    analysis = REPO / "results/figures/tsd_profile_minilm_sst2/tsd_analysis.json"
    assert runs.is_dir() and analysis.exists(), "run `make figures` (its outputs are committed)"
    nb = nbformat.read(REPO / "notebooks/tsd_change_rates.ipynb", as_version=4)
    os.environ.update(SPECTUNE_REPO=str(REPO), TSD_RUNS=str(runs), TSD_ANALYSIS=str(analysis), MPLBACKEND="Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # The last cell reports final (recall, accuracy) per LoRA run: three ranks tracked.
    last = nb.cells[-1]["outputs"][-1]["data"]["text/plain"]
    assert last.count("lora-r") == 3


@pytest.mark.slow
def test_plora_rank_notebook_executes() -> None:
    import nbformat
    from nbclient import NotebookClient

    runs = REPO / "results/runs/plora"
    assert runs.is_dir(), "run `make reproduce-plora` (its small run files are committed under results/runs/plora)"
    nb = nbformat.read(REPO / "notebooks/plora_rank.ipynb", as_version=4)
    os.environ.update(SPECTUNE_REPO=str(REPO), PLORA_RUNS=str(runs), MPLBACKEND="Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    last = nb.cells[-1]["outputs"][-1]["data"]["text/plain"]
    assert "PLoRA r=" in last and "LoRA r=" in last and "Full FT" in last


@pytest.mark.slow
def test_svf_experts_notebook_executes() -> None:
    """Transformer²'s experts notebook on the committed smoke-scale files: the three experts' z, CEM's α from the
    few-shot results, the SVF-vs-LoRA overlap of spectune.analyze --compare."""
    import nbformat
    from nbclient import NotebookClient

    runs, adapt = REPO / "results/runs/t2_table1", REPO / "results/runs/t2_table2/adapt"
    compare = sorted((REPO / "results/figures/t2_svf_vs_lora_gsm8k").glob("tsd_compare_*.json"))
    assert runs.is_dir() and adapt.is_dir() and compare, (
        "run `make reproduce-t2-table1 reproduce-t2-table2 t2-svf-analysis` (their small outputs are committed)")
    nb = nbformat.read(REPO / "notebooks/svf_experts.ipynb", as_version=4)
    os.environ.update(SPECTUNE_REPO=str(REPO), T2_RUNS=str(runs), T2_ADAPT=str(adapt), T2_COMPARE=str(compare[0]),
                      MPLBACKEND="Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    last = nb.cells[-1]["outputs"][-1]["data"]["text/plain"]
    assert "'t2_arc_easy'" in last and "'t2_gsm8k'" in last and "'t2_mbpp'" in last
    assert "mean_overlap" in last and "cem_alpha" in last and "'t2_math'" in last
