"""results/paper: every number in the CSVs equals the reference markdown (shared/reference/lora_dash_tables.md)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT / ".." / "shared" / "reference" / "lora_dash_tables.md"
PAPER = REPO_ROOT / "results" / "paper"
T1_TASKS = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"]
T2_TASKS = ["mnli", "sst2", "cola", "qqp", "qnli", "rte", "mrpc", "stsb"]
BACKBONES = {"Base": "DeBERTaV3-base", "Large": "DeBERTaV3-large"}


def _method(label: str) -> tuple[str, str]:
    """The reference's method label → (method, rank) as the CSV spells them."""
    if label == "-":
        return "-", ""
    if label in ("Fully FT", "FT"):
        return "full", ""
    m = re.fullmatch(r"(LoRA-Dash|LoRA) r=(\d+)", label)
    assert m, label
    return {"LoRA": "lora", "LoRA-Dash": "lora_dash"}[m.group(1)], m.group(2)


def parse_reference(text: str) -> dict[str, dict[tuple[str, str, str], dict[str, str]]]:
    """The two markdown tables of the reference, keyed by (model, method, rank), values as written."""
    sections = {"table1": text.split("## Table 1")[1].split("## Table 2")[0],
                "table2": text.split("## Table 2")[1].split("\n## ")[0]}
    out: dict[str, dict[tuple[str, str, str], dict[str, str]]] = {}
    for name, section in sections.items():
        rows = [line for line in section.splitlines() if line.startswith("|")]
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        assert set(rows[1].replace("|", "").replace("-", "").strip()) == set(), "second line is the separator"
        tasks = T1_TASKS if name == "table1" else T2_TASKS
        assert len(header) == 3 + len(tasks) + 1, header
        parsed = {}
        for line in rows[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            model = BACKBONES.get(cells[0], cells[0])
            method, rank = _method(cells[1])
            values = dict(zip(["params_pct", *tasks, "avg"], cells[2:], strict=True))
            if values["params_pct"] == "-":
                values["params_pct"] = ""
            parsed[(model, method, rank)] = values
        out[name] = parsed
    return out


def compare(reference: dict[tuple[str, str, str], dict[str, str]], csv_path: Path, model_column: str) -> list[str]:
    """Differences between the CSV and the reference (empty list: identical); numbers compared as text and value."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    problems = []
    seen = set()
    for row in rows:
        key = (row[model_column], row["method"], row["rank"])
        if key in seen:
            problems.append(f"duplicate row {key}")
        seen.add(key)
        if key not in reference:
            problems.append(f"row {key} is not in the reference")
            continue
        for column, want in reference[key].items():
            got = row.get(column)
            if got != want:
                problems.append(f"{key} {column}: csv {got!r} != reference {want!r}")
            elif want and float(got) != float(want):  # pragma: no cover - text equality implies this
                problems.append(f"{key} {column}: value differs")
    problems += [f"reference row {key} missing from the CSV" for key in reference if key not in seen]
    return problems


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[tuple[str, str, str], dict[str, str]]]:
    if not REFERENCE.is_file():
        pytest.skip(f"reference file {REFERENCE} not present")
    return parse_reference(REFERENCE.read_text(encoding="utf-8"))


def test_reference_parsed_fully(reference) -> None:
    assert len(reference["table1"]) == 22
    assert len(reference["table2"]) == 10
    assert reference["table2"][("DeBERTaV3-base", "lora", "8")]["sst2"] == "93.69"


def test_table1_csv_equals_reference(reference) -> None:
    assert compare(reference["table1"], PAPER / "lora_dash_table1_commonsense.csv", "model") == []


def test_table2_csv_equals_reference(reference) -> None:
    assert compare(reference["table2"], PAPER / "lora_dash_table2_glue.csv", "backbone") == []


def test_comparison_catches_a_changed_number(reference, tmp_path: Path) -> None:
    copy = tmp_path / "glue.csv"
    shutil.copy(PAPER / "lora_dash_table2_glue.csv", copy)
    copy.write_text(copy.read_text().replace("93.69", "93.70", 1))
    assert compare(reference["table2"], copy, "backbone") == [
        "('DeBERTaV3-base', 'lora', '8') sst2: csv '93.70' != reference '93.69'"]
    copy.write_text("\n".join(copy.read_text().splitlines()[:-1]) + "\n")  # drop the last row
    assert any("missing from the CSV" in p for p in compare(reference["table2"], copy, "backbone"))


def test_notes_mark_borrowed_lora_rows() -> None:
    with open(PAPER / "lora_dash_table1_commonsense.csv", newline="") as fh:
        rows = {(r["model"], r["method"], r["rank"]): r["note"] for r in csv.DictReader(fh)}
    dora = [("LLaMA-7B", r) for r in ("4", "8", "16", "64")] + [("LLaMA2-7B", "32"), ("LLaMA3-8B", "32")]
    for model, rank in dora:
        assert "DoRA" in rows[(model, "lora", rank)]
    assert "LLM-Adapters" in rows[("LLaMA-7B", "lora", "32")]
    others = [k for k, note in rows.items() if note and k[1] != "-"]
    assert sorted(others) == sorted([(m, "lora", r) for m, r in dora] + [("LLaMA-7B", "lora", "32")])
    assert all(not note for key, note in rows.items() if key[1] == "lora_dash")


def test_readme_states_source() -> None:
    text = (PAPER / "README.md").read_text()
    assert "2409.01035" in text and "poster" in text and "project-page" in text
