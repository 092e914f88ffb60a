"""Answer extraction of the LLM-Adapters commonsense protocol (Hu et al. 2023), used by DoRA and LoRA-Dash.

Facts taken from ``commonsense_evaluate.py`` of AGI-Edgerunners/LLM-Adapters (read in the author's copy
HZQ950419/LLM-Adapters, commit 6e05a24, and NVlabs/DoRA's copy of the same file), function ``extract_answer``:

- each dataset has a fixed set of label words; the prediction is the FIRST match of the alternation of those words
  (``re.findall(...)[0]``) in the stripped response, case-sensitive, no word boundaries ("solution10" would match
  "solution1"); no match gives the empty string, which is never correct;
- label words: BoolQ ``true|false``; PIQA ``solution1|solution2``; Social IQa, ARC-Easy, ARC-Challenge, OpenBookQA
  (and SciQ in the author's copy) ``answer1`` … ``answer5``; HellaSwag ``ending1`` … ``ending4``; WinoGrande
  ``option1|option2``;
- an item is correct when the extracted word equals the record's ``answer`` field exactly.

The official script applies the regex to the decoded text after the prompt's ``### Response:``; here the text is
the decoded new tokens only (:mod:`spectune.evaluation.generation`), which is the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from spectune.data.records import Record

_ANSWER_1_TO_5 = ("answer1", "answer2", "answer3", "answer4", "answer5")

#: Label words per canonical dataset name, in the order of the official alternation.
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "social_i_qa": _ANSWER_1_TO_5,
    "arc_challenge": _ANSWER_1_TO_5,
    "arc_easy": _ANSWER_1_TO_5,
    "openbookqa": _ANSWER_1_TO_5,
    "sciq": _ANSWER_1_TO_5,
    "hellaswag": ("ending1", "ending2", "ending3", "ending4"),
    "winogrande": ("option1", "option2"),
}

# Names used by LLM-Adapters (dataset folder names), lm-eval and this project's configs (conf/task/commonsense).
_ALIASES = {
    "arc-challenge": "arc_challenge", "arc_c": "arc_challenge", "arc-c": "arc_challenge",
    "arc-easy": "arc_easy", "arc_e": "arc_easy", "arc-e": "arc_easy",
    "siqa": "social_i_qa", "social_iqa": "social_i_qa", "social-i-qa": "social_i_qa",
    "obqa": "openbookqa", "winogrande_xl": "winogrande",
}

_PATTERNS = {name: re.compile("|".join(re.escape(w) for w in words)) for name, words in LABEL_WORDS.items()}


def canonical_commonsense_task(task: str) -> str:
    """Map a dataset name ("ARC-Easy", "arc_e", "commonsense/siqa") to a key of :data:`LABEL_WORDS`."""
    name = task.strip().rsplit("/", 1)[-1].lower()
    name = _ALIASES.get(name, name)
    if name not in LABEL_WORDS:
        raise ValueError(f"No LLM-Adapters answer pattern for task '{task}'; known: {', '.join(LABEL_WORDS)}.")
    return name


def answer_pattern(task: str) -> re.Pattern[str]:
    """The compiled alternation of ``task``'s label words (the official ``re.findall`` pattern)."""
    return _PATTERNS[canonical_commonsense_task(task)]


def extract_answer(task: str, text: str) -> str:
    """The first label word of ``task`` in ``text`` (the official ``extract_answer``), or ``""`` if none occurs."""
    match = answer_pattern(task).search(text.strip())
    return match.group(0) if match else ""


@dataclass
class ExtractionScore:
    """Exact-match scoring of generated responses: accuracy, and per item the extracted word and correctness."""

    accuracy: float
    predictions: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


def score_responses(records: Sequence[Record], responses: Sequence[str], task: str | None = None) -> ExtractionScore:
    """Extract the answer of each response and compare it exactly with ``record.answer``.

    ``task`` overrides each record's ``task`` (useful when records carry a project-specific name).
    """
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses.")
    predictions, correct = [], []
    for record, response in zip(records, responses, strict=True):
        if record.answer is None:
            raise ValueError(f"Record {record.task}/{record.id} has no `answer` label word to compare with.")
        pred = extract_answer(task or record.task, response)
        predictions.append(pred)
        correct.append(pred == record.answer)
    accuracy = sum(correct) / len(correct) if correct else float("nan")
    return ExtractionScore(accuracy=accuracy, predictions=predictions, correct=correct)
