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
