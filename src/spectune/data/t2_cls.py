"""Task ``t2_cls``: the data of Transformer²'s classification expert, the experts' own training queries labelled by
domain (``python -m spectune.train method=svf task=t2/cls train.objective=reinforce``).

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2, "classification expert"): an SVF expert trained with the same
RL recipe (reward +1 for the right ``\\boxed{domain}``, −1 otherwise) to classify a query into the experts' domains,
then used for the first pass of two-pass inference. The official data (github:SakanaAI/self-adaptive-llms, commit
03a41ae, ``tasks/cls.py`` lines 131-197, ``ClsTask``) take about 400 items each of GSM8K's *test* split (math), MBPP
(code) and ARC-Challenge's *test* split (reasoning), 4:1 train/test by position and the train part halved even/odd
into train/validation. ARC-Challenge is one of the unseen tasks the classifier then routes, so the official classifier
was trained on evaluation items.

Here the items come only from the *expert* tasks (role "expert" in :data:`spectune.data.t2_tasks.T2`; by default
GSM8K → math, MBPP → code, ARC-Easy → reasoning, ``task.domains`` chooses), from each expert task's train split
(classifier train) and validation split (classifier validation) as the expert runs carve them (same ``n_train`` /
``n_valid`` / ``n_test`` / ``seed``), never from a test split and never from an unseen task. The experts' test indices
are listed in the metadata as excluded; the task has no test split of its own (it is judged by its validation curve
and, in Table 2, by the routing of ``spectune.adapt strategy=cls_expert``).

Records (``task = "t2_cls"``): ``id`` = ``<source task>:<source id>``, ``instruction`` = the source task's user turn,
``output`` = the gold completion ``Classification: \\boxed{<domain>}`` (the official prompt's format), ``answer`` = the
domain, ``label`` = its index in :data:`DOMAINS`. Prompts and rewards live in :mod:`spectune.adaptation.cls_data`
(the first pass's prompt, :class:`~spectune.adaptation.cls_data.ClassifierRewardTask`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spectune.data.records import Record

CLS_TASK = "t2_cls"
#: Domains of Transformer²'s dispatch (the official classification prompt's categories, besides "other").
DOMAINS: tuple[str, ...] = ("code", "math", "reasoning")
#: The experts' training tasks and their domains (Transformer²'s three experts).
DEFAULT_DOMAINS: dict[str, str] = {"t2_gsm8k": "math", "t2_mbpp": "code", "t2_arc_easy": "reasoning"}


def query_text(record: Record) -> str:
    """The query a record shows the classifier: its task's user turn (the official ``problem`` / ``question`` /
    ``instruction`` field: MATH's problem, ARC's question with its options, the code tasks' instruction)."""
    if not record.instruction:
        raise ValueError(f"Record {record.task}/{record.id} has no instruction to classify.")
    return record.instruction


def gold_completion(domain: str) -> str:
    """The completion the classifier should give: the official prompt's format, ``Classification: \\boxed{...}``."""
    return f"Classification: \\boxed{{{domain}}}"


def check_domains(domains: Mapping[str, str] | None) -> dict[str, str]:
    """``{expert task: domain}`` with canonical task names (``t2/gsm8k`` → ``t2_gsm8k``); None gives
    :data:`DEFAULT_DOMAINS`, a task mapped to None is left out (``task.domains.t2_mbpp=null``). Refuses an empty
    mapping, unseen (evaluation) tasks, unknown tasks and unknown domains, each with the fix."""
    from spectune.data.t2_tasks import T2, t2_task

    if domains is None:
        return dict(DEFAULT_DOMAINS)
    if not isinstance(domains, Mapping) or not domains:
        raise ValueError(f"task.domains must map expert tasks to domains, e.g. {DEFAULT_DOMAINS}; got {domains!r}.")
    experts = [n for n, t in T2.items() if t.role == "expert"]
    out: dict[str, str] = {}
    for task, domain in domains.items():
        if domain is None:
            continue
        try:
            spec = t2_task(str(task))
        except ValueError:
            raise ValueError(f"task.domains names '{task}', not a Transformer² expert task; use {experts}.") from None
        if spec.role != "expert":
            raise ValueError(f"task.domains names {spec.name}, an unseen (evaluation) task of Transformer²: the "
                             f"classification expert is trained on the experts' training tasks only ({experts}). "
                             "(The official classifier's data included ARC-Challenge test items; this task refuses "
                             "them.)")
        if domain not in DOMAINS:
            raise ValueError(f"task.domains gives {spec.name} the domain '{domain}'; use one of {list(DOMAINS)}.")
        if spec.name in out:
            raise ValueError(f"task.domains names {spec.name} twice; give each expert task once.")
        out[spec.name] = str(domain)
    if not out:
        raise ValueError(f"task.domains leaves no expert task in; keep at least one of {experts} with a domain.")
    return out


@dataclass
class ClassifierData:
    """The classifier's ``train`` and ``valid`` records and ``meta`` (per source task: split sizes, indices, origin,
    and the test indices left out)."""

    train: list[Record]
    valid: list[Record]
    meta: dict[str, Any] = field(default_factory=dict)


def classifier_data(domains: Mapping[str, str] | None = None, source: str = "embedded", n_train: int | None = 64,
                    n_valid: int | None = 16, n_test: int | None = 32, seed: int = 0) -> ClassifierData:
    """Classifier records from the train / validation splits of the expert tasks in ``domains`` ({task: domain}).

    ``n_train`` / ``n_valid`` / ``n_test`` / ``seed`` are the expert runs' task sizes and seed (defaults: the smoke
    configs ``conf/task/t2/{gsm8k,mbpp,arc_easy}.yaml``), so the carve-out is theirs and the experts' test items stay
    out (``n_test`` is only what is left out; nothing of it is loaded as data). Refuses unseen (evaluation) tasks and
    unknown domains (:func:`check_domains`).
    """
    from spectune.data.t2_tasks import load_t2

    domains = check_domains(domains)
    train: list[Record] = []
    valid: list[Record] = []
    meta: dict[str, Any] = {"task": CLS_TASK, "source": source, "seed": seed, "domains": dict(domains),
                            "requested": {"n_train": n_train, "n_valid": n_valid, "n_test": n_test}, "sources": {}}
    for task, domain in domains.items():
        tr, va, _, m = load_t2(task, source, n_train, n_valid, n_test, seed)
        label = DOMAINS.index(domain)
        for part, out in ((tr, train), (va, valid)):
            out.extend(Record(task=CLS_TASK, id=f"{task}:{r.id}", label=label, instruction=query_text(r),
                              input="", context="", output=gold_completion(domain), answer=domain) for r in part)
        meta["sources"][task] = {"domain": domain, "n_train": len(tr), "n_valid": len(va),
                                 "train_indices": m["train_indices"], "valid_indices": m["valid_indices"],
                                 "excluded_test_indices": m["test_indices"], "origin": m["origin"]}
    meta.update(n_train=len(train), n_valid=len(valid))
    return ClassifierData(train, valid, meta)


def split_meta(data: ClassifierData) -> dict[str, Any]:
    """``data.meta`` in the shape of :class:`spectune.data.tasks.TaskSplits` meta (``data_indices.json``): indices
    per source task under ``train_indices`` / ``valid_indices``, ``test_indices`` empty (nothing is scored) and the
    experts' test items under ``excluded_test_indices``."""
    src = data.meta["sources"]
    return {"task": CLS_TASK, "source": data.meta["source"], "seed": data.meta["seed"],
            "carve_out": data.meta["source"] == "embedded", "requested": data.meta["requested"],
            "domains": data.meta["domains"],
            "train_indices": {t: s["train_indices"] for t, s in src.items()},
            "valid_indices": {t: s["valid_indices"] for t, s in src.items()},
            "test_indices": {}, "excluded_test_indices": {t: s["excluded_test_indices"] for t, s in src.items()},
            "origin": {t: s["origin"] for t, s in src.items()},
            "n_train": len(data.train), "n_valid": len(data.valid), "n_test": 0}


__all__ = ["CLS_TASK", "DEFAULT_DOMAINS", "DOMAINS", "ClassifierData", "check_domains", "classifier_data",
           "gold_completion", "query_text", "split_meta"]
