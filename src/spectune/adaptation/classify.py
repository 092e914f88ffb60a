"""Transformer²'s first pass by classification: the query's domain decides which expert answers it.

Transformer² (Sun, Cetin, Tang 2025, ICLR 2025, §3.2): (1) prompt-based adaptation asks the model itself to classify
the query as code, math, reasoning or other, answer in ``\\boxed{}``; (2) the classification-expert variant asks the
same question of the model carrying an SVF expert trained (same RL) to classify. The expert of the predicted domain
then answers (z' = z_k); "other", or a domain without an expert, answers with the base weights.

The classification text is the official one, verbatim: ``CLASSIFICATION_PROMPT`` of ``classify_samples`` in
github:SakanaAI/self-adaptive-llms, commit 03a41aed1cfc57276e72ad5a42845a04b356db1e, ``utils.py`` lines 166-181 (the
same text is the classifier task's system message, ``tasks/cls.py`` lines 110-125). As there, it is the system
message and the query (the task's user turn) the user message; the prediction is the content of the first
``\\boxed{...}`` (``\\\\boxed{([^}]*)}``, case-sensitive, unstripped) and anything but ``code``, ``math`` or
``reasoning`` is "other" (``utils.py`` lines 183-220).

Differences from the official first pass (docs/adapt.md): the request is rendered with the model's own chat template
and no assistant pre-fill for every task (the official code renders it with the *task's* template: ARC's Llama-3
template pre-fills "Let's think step by step", the code tasks use the ``@@ Instruction`` text format); the system
text is stripped like every chat turn here (``spectune.data.t2_tasks.build_prompt``; the official Llama-3 template
trims it too).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from spectune.adaptation.settings import DOMAINS, OTHER
from spectune.data.records import Record
from spectune.data.t2_cls import query_text  # the query a record shows the classifier (re-exported)

OFFICIAL_REPO = "SakanaAI/self-adaptive-llms"
OFFICIAL_COMMIT = "03a41aed1cfc57276e72ad5a42845a04b356db1e"
#: Where the classification prompt is read (file and lines at :data:`OFFICIAL_COMMIT`).
PROMPT_SOURCE = "utils.py:166-181 (classify_samples.CLASSIFICATION_PROMPT); tasks/cls.py:110-125 (ClsTask.system_msg)"

#: The official classification prompt, byte for byte (leading newline and four-space indentation included).
CLASSIFICATION_PROMPT = "\n".join([
    "",
    "    # Analyze the given question and classify it into one of four categories: 'code', 'math', 'reasoning' or "
    "'other'. Follow these guidelines:",
    "",
    "    1. Code: Questions asking for programming solutions, functions, algorithms. Often includes specific "
    "programming terms, language syntax, or data structures.",
    "    2. Math: Questions involving mathematical calculations, formulas, statistics. Often includes numbers, "
    "equations, or mathematical operations.",
    "    3. Reasoning: Questions requiring logical thinking, application of scientific knowledge, or critical analysis "
    "of information. Often presents statements that need evaluation based on general understanding. ",
    "    4. Other: Questions not clearly fit into above categories.",
    "",
    "    Instructions:",
    "    - Consider the primary focus, skills, and knowledge required to answer the question.",
    "    - If a question spans multiple categories, choose the most dominant one.",
    "    - Provide your final classification within \\boxed{} notation. Example: \\boxed{reasoning}",
    "",
    "    Format your response as follows:",
    "    Classification: \\boxed{category}",
    "    ",
])

_BOXED = re.compile(r"\\boxed{([^}]*)}")


def extract_classification(text: str) -> str | None:
    """The content of the first ``\\boxed{...}`` in ``text`` (the official ``extract_classification``), or None."""
    found = _BOXED.search(text)
    return found.group(1) if found else None


def domain_of(text: str) -> str:
    """The predicted domain of a classification completion: ``code``, ``math``, ``reasoning`` or ``other``."""
    label = extract_classification(text)
    return label if label in DOMAINS else OTHER


def classification_prompt(query: str, tokenizer: Any, chat_template: str | None = None) -> str:
    """The first-pass prompt: [system: the official text, user: ``query``] in the model's chat template, generation
    prompt on (tokenise with ``add_special_tokens=False``)."""
    messages = [{"role": "system", "content": CLASSIFICATION_PROMPT.strip()},
                {"role": "user", "content": query.strip()}]
    return tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=True)


def classification_prompts(records: Sequence[Record], tokenizer: Any, chat_template: str | None = None) -> list[str]:
    """:func:`classification_prompt` of each record's query."""
    return [classification_prompt(query_text(r), tokenizer, chat_template) for r in records]


__all__ = ["CLASSIFICATION_PROMPT", "OFFICIAL_COMMIT", "OFFICIAL_REPO", "PROMPT_SOURCE", "classification_prompt",
           "classification_prompts", "domain_of", "extract_classification", "query_text"]
