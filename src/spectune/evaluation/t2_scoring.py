"""Transformer²'s scoring: greedy generation with the official stop strings, the official answer checks, the ±1
reward of its REINFORCE training, and gold-answer bits per byte beside every exact-match score.

Checks, as SakanaAI/self-adaptive-llms (commit 03a41ae) scores them (``evaluation/fishfarm/fishfarm/tasks/``; file
by file in ``docs/t2-tasks.md``):

- GSM8K (``language_restricted_math.py``): the last match of ``\\d*\\.?\\d+`` in the completion, as a float, equals
  the integer taken the same way from the reference solution (``spectune.data.t2_tasks.gsm8k_number``).
- ARC (``ai2_arc.py``): the letter of the first "answer is (X)" / "answer is X", else of the first line's last
  "answer: X" / "Answer: X", else the last standalone capital A-J; no letter at all scores as a guess drawn with
  ``random.seed(42)`` among the options (deterministic per option count).
- MATH (``competation_math.py``): :mod:`spectune.evaluation.t2_math`; its sympy step runs in the sandbox.
- MBPP / HumanEval (``evalplus/generation.py``, ``sanitization.py``, ``evaluation.py``): the completion up to its
  first "```" is the code; MBPP's is sanitised (top-level imports, functions and classes kept) and followed by the
  problem's asserts; HumanEval's follows the prompt code and is followed by ``check(entry_point)``; pass = the
  program exits 0 within ``code_timeout`` seconds in :func:`spectune.evaluation.execution.run_program` (never in
  this process). The official scoring runs evalplus's base inputs against the reference outputs; these are the same
  problems' original tests (see ``docs/t2-tasks.md``).

Generation (vLLM in the official code: temperature 0, max 512 new tokens, 1024 for MATH, stop strings
"Instruction:", "Instruction", "Response:", "Response"): batched greedy decoding with ``transformers``, prompts padded
on the left, the completion cut at the first stop string (vLLM leaves the stop string out).
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from spectune.data.records import Record
from spectune.data.t2_tasks import (
    ARC_LETTERS,
    STOP_STRINGS,
    build_prompt,
    gold_continuation,
    gsm8k_number,
    humaneval_prompt_code,
    t2_task,
)
from spectune.evaluation import t2_math

#: Defaults of the sandboxed checks (seconds): one candidate program, one MATH pair's sympy step.
CODE_TIMEOUT = 10.0
MATH_PAIR_TIMEOUT = 5.0


@dataclass(frozen=True)
class Verdict:
    """One checked completion: ``correct``, the extracted ``prediction`` (None when none was found) and, for code,
    the sandbox ``status`` ("passed", "failed", "timeout", ...)."""

    correct: bool
    prediction: str | None = None
    status: str = ""

    @property
    def reward(self) -> float:
        """The official REINFORCE reward: +1 correct, -1 otherwise."""
        return 1.0 if self.correct else -1.0


# --- answer extraction -----------------------------------------------------------------------------------------

_ARC_FIRST = re.compile(r"answer is \(?([A-J])\)?")
_ARC_AGAIN = re.compile(r".*[aA]nswer:\s*([A-J])")
_ARC_FINAL = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)


def arc_extract(text: str) -> str | None:
    """The official ARC letter extraction (three patterns in turn; see the module doc), or None."""
    for pattern in (_ARC_FIRST, _ARC_AGAIN):
        found = pattern.search(text)
        if found:
            return found.group(1)
    found = _ARC_FINAL.search(text)
    return found.group(0) if found else None


def arc_correct(prediction: str | None, answer: str, n_options: int) -> bool:
    """The official ``is_correct``: a found letter must equal ``answer``; none found is a ``random.seed(42)`` guess."""
    if not prediction:
        return ARC_LETTERS[random.Random(42).randint(0, n_options - 1)] == answer
    return prediction == answer


def gsm8k_correct(record: Record, completion: str) -> Verdict:
    """GSM8K: the completion's last number equals the record's official integer answer."""
    pred = gsm8k_number(completion)
    gold = None if record.answer is None else int(record.answer)
    return Verdict(gold is not None and pred is not None and pred == gold, None if pred is None else repr(pred))


def code_body(completion: str) -> str:
    """The completion up to its first "```" (the official ``completion_body``)."""
    cut = completion.find("```")
    return completion if cut < 0 else completion[:cut]


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False


def sanitize_code(code: str) -> str:
    """Keep the top-level imports, functions and classes of model-written code (parsed, never run).

    In the spirit of evalplus's sanitiser, which the official MBPP scoring applies: stray top-level statements
    (example calls, prints, asserts, ``if __name__``) go; code cut off mid-way keeps its longest prefix of whole lines
    that parses. Code of which no prefix parses comes back unchanged (and fails as a syntax error).
    """
    lines = code.replace("\r\n", "\n").split("\n")
    for end in range(len(lines), 0, -1):
        prefix = "\n".join(lines[:end])
        if _parses(prefix):
            break
    else:
        return code
    tree = ast.parse(prefix)
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    kept = []
    for node in tree.body:
        if isinstance(node, keep):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n\n".join(kept)


def mbpp_program(record: Record, completion: str) -> str:
    """The program run for an MBPP completion: the sanitised code, then the problem's setup and asserts."""
    return f"{sanitize_code(code_body(completion))}\n\n\n{record.answer}"


def humaneval_program(record: Record, completion: str) -> str:
    """The program run for a HumanEval completion: prompt code + completion body, then ``check(entry_point)``."""
    return f"{humaneval_prompt_code(record)}\n{code_body(completion)}\n\n{record.answer}"


def _run_code(program: str, timeout: float) -> tuple[bool, str]:
    from spectune.evaluation.execution import SandboxError, run_program

    try:
        result = run_program(program, timeout=timeout)
    except SandboxError as err:
        return False, f"sandbox_error: {str(err)[:200]}"
    return result.passed, result.status


# --- MATH: sympy step in the sandbox ----------------------------------------------------------------------------

_MATH_MARK = "T2MATH_RESULT:"


def _math_program(pairs: Sequence[tuple[str, str]], per_pair: float) -> str:
    """t2_math's source, then a driver checking each (gold, prediction) pair with sympy under a per-pair alarm."""
    source = Path(t2_math.__file__).read_text(encoding="utf-8")
    data = json.dumps([list(p) for p in pairs])
    return source + f"""

import json as _json
import signal as _signal


class _PairTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _PairTimeout()


_signal.signal(_signal.SIGALRM, _on_alarm)
_marks = []
for _gold, _pred in _json.loads({data!r}):
    _signal.setitimer(_signal.ITIMER_REAL, {float(per_pair)!r})
    try:
        _marks.append("1" if is_equiv(_gold, _pred, sympy_equal) else "0")
    except _PairTimeout:
        _marks.append("t")
    except BaseException:
        _marks.append("e")
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
print({_MATH_MARK!r} + "".join(_marks), flush=True)
"""


def math_symbolic_batch(pairs: Sequence[tuple[str, str]], per_pair: float = MATH_PAIR_TIMEOUT) -> list[str]:
    """Run the full MATH equivalence (sympy step included) on (gold, prediction) pairs in one sandboxed program.

    Returns one mark per pair: "1" equivalent, "0" not, "t" over ``per_pair`` seconds, "e" an error, "x" when the
    sandbox itself failed (every mark then "x"). Only "1" counts as correct.
    """
    if not pairs:
        return []
    from spectune.evaluation.execution import SandboxError, run_program

    try:
        result = run_program(_math_program(pairs, per_pair), timeout=per_pair * len(pairs) + 30.0,
                             tail_bytes=len(pairs) + 4096)
    except SandboxError:
        return ["x"] * len(pairs)
    line = next((ln for ln in reversed(result.output_tail.splitlines()) if ln.startswith(_MATH_MARK)), None)
    marks = line[len(_MATH_MARK):] if line else ""
    return list(marks) if len(marks) == len(pairs) else ["x"] * len(pairs)


def math_verdicts(records: Sequence[Record], completions: Sequence[str],
                  per_pair: float = MATH_PAIR_TIMEOUT) -> list[Verdict]:
    """MATH verdicts: string/number rules in this process; pairs that reach the sympy step go to the sandbox."""
    out: list[Verdict | None] = []
    pending: list[tuple[int, str, str]] = []
    for i, (record, completion) in enumerate(zip(records, completions, strict=True)):
        pred = t2_math.extract_math_answer(completion)
        asked: list[bool] = []

        def note(a: str, b: str, asked: list[bool] = asked) -> bool:
            asked.append(True)
            return False

        if t2_math.is_equiv(record.answer, pred, note):
            out.append(Verdict(True, pred))
        elif asked and record.answer is not None and pred is not None:
            out.append(None)
            pending.append((i, record.answer, pred))
        else:
            out.append(Verdict(False, pred))
    marks = math_symbolic_batch([(g, p) for _, g, p in pending], per_pair)
    for (i, _, pred), mark in zip(pending, marks, strict=True):
        out[i] = Verdict(mark == "1", pred, "" if mark in "01" else {"t": "timeout", "e": "error"}.get(mark, "sandbox"))
    return [v for v in out if v is not None]


# --- checks and rewards ------------------------------------------------------------------------------------------


def check_completions(records: Sequence[Record], completions: Sequence[str], code_timeout: float = CODE_TIMEOUT,
                      math_timeout: float = MATH_PAIR_TIMEOUT, workers: int | None = None) -> list[Verdict]:
    """Check each completion of each record with its task's official rule (records of several tasks may mix).

    Code runs in the sandbox, ``workers`` programs at a time (default: the CPU count, at most 8).
    """
    if len(records) != len(completions):
        raise ValueError(f"{len(records)} records but {len(completions)} completions.")
    verdicts: list[Verdict | None] = [None] * len(records)
    math_idx, code_idx = [], []
    for i, (record, completion) in enumerate(zip(records, completions, strict=True)):
        checker = t2_task(record.task).checker
        if checker == "gsm8k":
            verdicts[i] = gsm8k_correct(record, completion)
        elif checker == "arc":
            pred = arc_extract(completion)
            verdicts[i] = Verdict(arc_correct(pred, record.answer or "", len(record.choices)), pred)
        elif checker == "math":
            math_idx.append(i)
        else:
            code_idx.append(i)
    if math_idx:
        for i, v in zip(math_idx, math_verdicts([records[i] for i in math_idx], [completions[i] for i in math_idx],
                                                math_timeout), strict=True):
            verdicts[i] = v
    if code_idx:
        def program(i: int) -> str:
            build = mbpp_program if t2_task(records[i].task).checker == "mbpp" else humaneval_program
            return build(records[i], completions[i])

        n_workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
            results = list(pool.map(lambda i: _run_code(program(i), code_timeout), code_idx))
        for i, (passed, status) in zip(code_idx, results, strict=True):
            verdicts[i] = Verdict(passed, None, status)
    return [v for v in verdicts if v is not None]


def rewards(records: Sequence[Record], completions: Sequence[str], **kwargs: Any) -> list[float]:
    """The official REINFORCE rewards: +1.0 for a correct completion, -1.0 otherwise (batched checks)."""
    return [v.reward for v in check_completions(records, completions, **kwargs)]


def reward(record: Record, completion: str, **kwargs: Any) -> float:
    """The reward of one completion (+1.0 / -1.0); prefer :func:`rewards` for many (code and MATH batch better)."""
    return rewards([record], [completion], **kwargs)[0]


# --- generation ----------------------------------------------------------------------------------------------------


def cut_at_stop(text: str, stop: Sequence[str] = STOP_STRINGS) -> str:
    """``text`` up to the first occurrence of any stop string (the stop string excluded, as vLLM returns it)."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[:min(cuts)] if cuts else text


def generate_batches(model: Any, tokenizer: Any, prompts: Sequence[str], config: Any,
                     batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Generate for ``prompts`` in batches of similar length (longest first, padded on the left by the caller's
    tokenizer setting), yielding (prompt indices, new token ids of each) per batch; ``config`` = a GenerationConfig."""
    from spectune.evaluation.generation import _model_device

    device = _model_device(model)
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        with torch.inference_mode():
            gen = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 generation_config=config, tokenizer=tokenizer)
        yield idx, gen[:, enc["input_ids"].shape[1]:]


def generate_greedy(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 512,
                    batch_size: int = 8, stop: Sequence[str] = STOP_STRINGS, progress: bool = False) -> list[str]:
    """Greedy completions of ``prompts`` (full prompt texts, tokenised without added special tokens), in batches.

    Prompts are sorted by length and padded on the left; generation of a sequence ends at EOS, at a stop string
    (``transformers``' ``stop_strings``) or after ``max_new_tokens``; each completion is decoded without special
    tokens, cut at its first stop string and not stripped (leading whitespace matters for code).
    """
    from tqdm.auto import tqdm

    from spectune.evaluation.generation import _padding, protocol_generation_config

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    prompts = list(prompts)
    out: list[str] = [""] * len(prompts)
    if not prompts:
        return out
    was_training = model.training
    model.eval()
    with _padding(tokenizer, "left"):
        config = protocol_generation_config(model, tokenizer, num_beams=1, max_new_tokens=max_new_tokens)
        config.stop_strings = list(stop) or None
        bar = tqdm(total=len(prompts), desc="generate (greedy)", unit="prompt", disable=not progress)
        try:
            for idx, new in generate_batches(model, tokenizer, prompts, config, batch_size):
                texts = tokenizer.batch_decode(new, skip_special_tokens=True)
                for i, text in zip(idx, texts, strict=True):
                    out[i] = cut_at_stop(text, stop)
                bar.update(len(idx))
        finally:
            bar.close()
            model.train(was_training)
    return out


# --- scoring ---------------------------------------------------------------------------------------------------


@dataclass
class T2Score:
    """One task's scores: ``exact_match`` (accuracy, or pass@1 for code; None without generation), gold
    ``bits_per_byte`` / ``nll_per_token`` (always), ARC's ``likelihood_accuracy``, and per item the completions,
    verdicts and rewards."""

    task: str
    n: int
    exact_match: float | None
    bits_per_byte: float
    nll_per_token: float
    likelihood_accuracy: float | None = None
    completions: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    generation_seconds: float = 0.0
    max_new_tokens: int | None = None

    def metrics(self) -> dict[str, Any]:
        """The numbers for ``eval_results.json`` (no per-item text)."""
        out: dict[str, Any] = {"n": self.n, "bits_per_byte": self.bits_per_byte, "nll_per_token": self.nll_per_token}
        if self.exact_match is not None:
            out.update(exact_match=self.exact_match, generation_seconds=self.generation_seconds,
                       max_new_tokens=self.max_new_tokens,
                       n_no_prediction=sum(v.prediction is None and not v.status for v in self.verdicts))
            if t2_task(self.task).checker in ("mbpp", "humaneval"):
                out["pass@1"] = self.exact_match
                out["n_timeout"] = sum(v.status == "timeout" for v in self.verdicts)
        if self.likelihood_accuracy is not None:
            out["likelihood_accuracy"] = self.likelihood_accuracy
        return out


def arc_letter_records(records: Sequence[Record], prompts: Sequence[str]) -> list[Record]:
    """ARC as likelihood multiple choice: after the full prompt, the continuations ". The answer is (X)." per option."""
    return [Record(task=r.task, id=r.id, label=r.label, context=p,
                   choices=tuple(f". The answer is ({letter})." for letter in ARC_LETTERS[:len(r.choices)]))
            for r, p in zip(records, prompts, strict=True)]


def score_t2(model: Any, tokenizer: Any, task: str, records: Sequence[Record], generate: bool = True,
             max_new_tokens: int | None = None, batch_size: int = 8, code_timeout: float = CODE_TIMEOUT,
             math_timeout: float = MATH_PAIR_TIMEOUT, chat_template: str | None = None,
             progress: bool = False) -> T2Score:
    """Score ``records`` of one t2 task: gold bits per byte always; with ``generate``, greedy completions checked
    by the official rule (``max_new_tokens`` None = the official budget, 512 or 1024 for MATH)."""
    from spectune.evaluation.likelihood import score_gold, score_multiple_choice

    spec = t2_task(task)
    records = list(records)
    if not records:
        raise ValueError(f"No records to score for {spec.name}.")
    prompts = [build_prompt(r, tokenizer, chat_template) for r in records]
    gold = score_gold(model, tokenizer, prompts, [gold_continuation(r) for r in records], batch_size=batch_size,
                      progress=progress)
    likelihood_accuracy = None
    if spec.checker == "arc":
        mc = score_multiple_choice(model, tokenizer, arc_letter_records(records, prompts), batch_size=batch_size)
        likelihood_accuracy = mc.accuracy
    score = T2Score(spec.name, len(records), None, gold.bits_per_byte, gold.nll_per_token, likelihood_accuracy)
    if generate:
        budget = int(max_new_tokens or spec.max_new_tokens)  # (int(): a config override may arrive as text)
        t0 = time.perf_counter()
        score.completions = generate_greedy(model, tokenizer, prompts, max_new_tokens=budget, batch_size=batch_size,
                                            progress=progress)
        score.generation_seconds = time.perf_counter() - t0
        score.verdicts = check_completions(records, score.completions, code_timeout=code_timeout,
                                           math_timeout=math_timeout)
        score.exact_match = sum(v.correct for v in score.verdicts) / len(records)
        score.max_new_tokens = budget
    return score


def evaluate_t2(model: Any, tokenizer: Any, task: str, records: Sequence[Record], protocols: Sequence[str],
                batch_size: int = 8, max_new_tokens: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """``eval_results.json`` entry of one t2 task: ``protocols`` with "generation" add exact match (pass@1) to the
    gold bits per byte that are always reported; "likelihood" alone scores bits per byte (and ARC's letter
    likelihood accuracy) only."""
    unknown = set(protocols) - {"likelihood", "generation"}
    if unknown:
        raise ValueError(f"Unknown evaluation protocols {sorted(unknown)}; use likelihood and/or generation.")
    if not records:
        return {"n": 0}
    score = score_t2(model, tokenizer, task, records, generate="generation" in protocols,
                     max_new_tokens=max_new_tokens, batch_size=batch_size, **kwargs)
    return score.metrics()


def primary_metric(protocols: Sequence[str]) -> str:
    """The t2 family's primary metric: exact match when generating, else gold bits per byte (lower is better)."""
    return "exact_match" if "generation" in protocols else "bits_per_byte"


RewardFn = Callable[[Record, str], float]
__all__ = ["CODE_TIMEOUT", "MATH_PAIR_TIMEOUT", "RewardFn", "T2Score", "Verdict", "arc_correct", "arc_extract",
           "check_completions", "code_body", "cut_at_stop", "evaluate_t2", "generate_greedy", "gsm8k_correct",
           "humaneval_program", "math_symbolic_batch", "math_verdicts", "mbpp_program", "primary_metric", "reward",
           "rewards", "sanitize_code", "score_t2"]
