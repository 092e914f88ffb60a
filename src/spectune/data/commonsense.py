"""The eight commonsense tasks' two text views: LLM-Adapters' instructions and lm-eval-style multiple choice.

Generative view (LLM-Adapters, ``commonsense_170k.json`` and ``dataset/<Task>/test.json`` of
AGI-Edgerunners/LLM-Adapters): every example is ``{"instruction", "input": "", "output": "the correct answer is
<word>", "answer": "<word>"}``. The instruction strings below reproduce that data exactly (checked against copies
of the released test files; raw dataset text, no stripping):

- boolq: ``Please answer the following question with true or false, question: {question}?\\n\\nAnswer format:
  true/false`` (the passage is not shown; a "?" is appended to the question);
- piqa: ``Please choose the correct solution to the question: {goal}\\n\\nSolution1: {sol1}\\n\\nSolution2:
  {sol2}\\n\\nAnswer format: solution1/solution2``;
- siqa, arc_e, arc_c, obqa: ``Please choose the correct answer to the question: {question}\\n\\nAnswer1: {a1}
  Answer2: {a2} ...\\n\\nAnswer format: answer1/answer2/...`` (siqa's question is ``{context} {question}``; ARC
  questions with 3 or 5 options list that many: inferred, as the answer1..answer5 regex of LLM-Adapters'
  extract_answer implies; no such row was seen in the copies read);
- hellaswag: ``Please choose the correct ending to complete the given sentence: {activity_label}: {ctx}\\n\\n
  Ending1: {e1} Ending2: {e2} Ending3: {e3} Ending4: {e4}\\n\\nAnswer format: ending1/ending2/ending3/ending4``
  (raw ``ctx``, WikiHow "[header]"/"[title]" markers kept);
- winogrande: ``Please choose the correct answer to fill in the blank to complete the given sentence:
  {sentence}\\n\\nOption1: {o1} Option2: {o2} Answer format: option1/option2`` (no blank line before "Answer
  format" here: LLM-Adapters' own quirk, kept).

Log-likelihood view (lm-evaluation-harness conventions): ``context`` plus ``choices``, each choice a natural
continuation with the leading space lm-eval's target delimiter adds (:data:`CHOICE_DELIMITER`); ``label`` is the
gold index. For every commonsense record ``answer == label_words[label]``, so one index serves both views.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

OUTPUT_PREFIX = "the correct answer is "

#: Prefixed to every choice: lm-eval's default ``target_delimiter``, so ``context + choice`` is the scored text.
#: (A scorer that adds the delimiter itself must then be given ``target_delimiter=""``.)
CHOICE_DELIMITER = " "

# Label words in LLM-Adapters' order (the order of the "Answer format:" line). ARC lists up to five options.
LABEL_WORDS: dict[str, tuple[str, ...]] = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "siqa": ("answer1", "answer2", "answer3"),
    "hellaswag": ("ending1", "ending2", "ending3", "ending4"),
    "winogrande": ("option1", "option2"),
    "arc_e": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "arc_c": ("answer1", "answer2", "answer3", "answer4", "answer5"),
    "obqa": ("answer1", "answer2", "answer3", "answer4"),
}

# Instruction openings, used to tell which task a commonsense_170k entry belongs to. siqa, ARC and OBQA share one
# template ("qa"), so the 170k mix cannot be split between them.
_OPENINGS: tuple[tuple[str, str], ...] = (
    ("boolq", "Please answer the following question with true or false"),
    ("piqa", "Please choose the correct solution to the question"),
    ("hellaswag", "Please choose the correct ending to complete the given sentence"),
    ("winogrande", "Please choose the correct answer to fill in the blank"),
    ("qa", "Please choose the correct answer to the question"),
)
TEMPLATE_OF_TASK = {"boolq": "boolq", "piqa": "piqa", "hellaswag": "hellaswag", "winogrande": "winogrande",
                    "siqa": "qa", "arc_e": "qa", "arc_c": "qa", "obqa": "qa"}

_ANSWER_FORMAT = re.compile(r"Answer format:\s*(\S+)\s*$")


def output_for(answer: str) -> str:
    """LLM-Adapters' response text: ``"the correct answer is <answer>"``."""
    return OUTPUT_PREFIX + answer


def template_of(instruction: str) -> str | None:
    """Which LLM-Adapters template an instruction uses: boolq, piqa, hellaswag, winogrande, "qa" or None."""
    for name, opening in _OPENINGS:
        if instruction.startswith(opening):
            return name
    return None


def answer_words(instruction: str) -> tuple[str, ...]:
    """The label words an instruction offers, read from its final ``Answer format: a/b/...`` (empty if none)."""
    m = _ANSWER_FORMAT.search(instruction)
    return tuple(m.group(1).split("/")) if m else ()


def _numbered(prefix: str, texts: Sequence[str]) -> str:
    return " ".join(f"{prefix}{i}: {t}" for i, t in enumerate(texts, start=1))


def _format_line(word: str, n: int) -> str:
    return "Answer format: " + "/".join(f"{word}{i}" for i in range(1, n + 1))


# --- LLM-Adapters instructions ----------------------------------------------------------------------------------


def boolq_instruction(question: str) -> str:
    """BoolQ instruction (question only, "?" appended, as in LLM-Adapters)."""
    return (
        f"Please answer the following question with true or false, question: {question}?\n\nAnswer format: true/false"
    )


def piqa_instruction(goal: str, sol1: str, sol2: str) -> str:
    """PIQA instruction."""
    return (
        f"Please choose the correct solution to the question: {goal}\n\nSolution1: {sol1}\n\nSolution2: {sol2}"
        "\n\nAnswer format: solution1/solution2"
    )


def qa_instruction(question: str, options: Sequence[str]) -> str:
    """The shared SIQA / ARC / OBQA instruction with ``len(options)`` numbered answers."""
    return (
        f"Please choose the correct answer to the question: {question}\n\n{_numbered('Answer', options)}"
        f"\n\n{_format_line('answer', len(options))}"
    )


def hellaswag_instruction(activity_label: str, ctx: str, endings: Sequence[str]) -> str:
    """HellaSwag instruction (raw context and endings)."""
    return (
        f"Please choose the correct ending to complete the given sentence: {activity_label}: {ctx}"
        f"\n\n{_numbered('Ending', endings)}\n\n{_format_line('ending', len(endings))}"
    )


def winogrande_instruction(sentence: str, option1: str, option2: str) -> str:
    """WinoGrande instruction (no blank line before "Answer format", as in LLM-Adapters)."""
    return (
        "Please choose the correct answer to fill in the blank to complete the given sentence: "
        f"{sentence}\n\nOption1: {option1} Option2: {option2} Answer format: option1/option2"
    )


# --- lm-eval multiple-choice views -----------------------------------------------------------------------------


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag cleaning: strip, " [title]" -> ". ", drop other [bracketed] markers, squeeze "  "."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_context(activity_label: str, ctx_a: str, ctx_b: str) -> str:
    """lm-eval's HellaSwag query: ``preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())``."""
    return hellaswag_preprocess(f"{activity_label}: {ctx_a} {ctx_b.capitalize()}")


def continuation(text: str) -> str:
    """A choice as lm-eval scores it: the target delimiter (:data:`CHOICE_DELIMITER`, one space) then the text."""
    return CHOICE_DELIMITER + text


def winogrande_split(sentence: str, option1: str, option2: str) -> tuple[str, tuple[str, str]]:
    """WinoGrande as one context and two continuations: the text before "_" and ``" <option> <rest>"``.


    lm-eval scores WinoGrande by *partial* evaluation (two contexts ending in the options, one shared suffix);
    a Record holds one context, so here the shared prefix is the context and each choice is the option followed
    by the rest of the sentence. ``context + choice`` is the completed sentence (the blank is never first in
    WinoGrande xl's validation split, so the context is never empty there).
    """
    idx = sentence.index("_")
    prefix = sentence[:idx].rstrip()
    rest = sentence[idx + 1 :].strip()
    return prefix, (continuation(f"{option1} {rest}".rstrip()), continuation(f"{option2} {rest}".rstrip()))
