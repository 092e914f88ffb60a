"""Batched generation under the LLM-Adapters commonsense protocol (Hu et al. 2023; used by DoRA and LoRA-Dash).

Protocol, from ``commonsense_evaluate.py`` of AGI-Edgerunners/LLM-Adapters (read in HZQ950419/LLM-Adapters,
commit 6e05a24, and NVlabs/DoRA's copy): prompt = the Alpaca-style template of ``generate_prompt(instruction)``;
beam search with 4 beams, no sampling (its ``temperature=0.1, top_p=0.75, top_k=40`` are inert because
``do_sample`` stays False), at most 32 new tokens; the tokenizer pads on the left; the published runs use
``--batch_size 1``. The answer is the first label word in the response (:mod:`.answer_extraction`).

What differs here, and why it is safe:

- prompts run in batches, sorted by token length (less padding), with an attention mask (the official script
  passes no mask, harmless only at batch size 1); the output order is the input order;
- only the new tokens are decoded (the official decodes everything and splits at ``### Response:``);
- the model's own generation config supplies the EOS / pad ids; sampling settings of an instruct model's
  config (e.g. LLaMA-3-Instruct's ``do_sample=True``) are overridden, so the search is deterministic.

Batching can change a beam only through float rounding of padded matrix products; the agreement with the
batch-size-1 loop is measured, not assumed (``tests/evaluation/test_generation.py``, ``compare_with_loop``).
Measured on a 2-core CPU (shared with other jobs), full SmolLM2-135M-Instruct in fp32, LLM-Adapters evaluation
prompts of the embedded PIQA / BoolQ / ARC-Easy records (32 each), batch 16 alternating with the loop: identical
decoded text on 96 of 96 prompts; throughput 1.26x the loop with 2 threads, 1.46x with 1 thread (PIQA 0.7-1.0x,
BoolQ 2.4-3.4x, ARC-Easy 1.5-2.2x). A CPU is compute-bound here, so batching gains little, and long prompts gain
more from batch 4 than 16 (PIQA, 16 prompts, 1 thread: 1.6x at batch 4, 1.3x at 16). Performance target 4
(>= 10x the loop) is a GPU target: measure it there with ``compare_with_loop``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from spectune.data.records import Record
from spectune.evaluation.answer_extraction import score_responses

#: The LLM-Adapters commonsense settings.
NUM_BEAMS = 4
MAX_NEW_TOKENS = 32

PromptFn = Callable[[Record], str]


def default_prompt_fn(record: Record) -> str:
    """The LLM-Adapters evaluation prompt of ``record`` (``commonsense_evaluate.py``'s ``generate_prompt``).

    Taken from ``spectune.data.llm_adapters`` (``generate_prompt(..., style="eval")``, byte for byte).
    """
    try:
        from spectune.data.llm_adapters import generate_prompt
    except ImportError as err:  # pragma: no cover - depends on the data package being present
        raise ImportError(
            "spectune.data.llm_adapters.generate_prompt is not available; pass prompt_fn=... explicitly."
        ) from err
    if record.instruction is None:
        raise ValueError(f"Record {record.task}/{record.id} has no instruction to prompt with.")
    try:
        return generate_prompt(record.instruction, record.input, style="eval")
    except TypeError:  # a template without the train/eval styles
        return generate_prompt(record.instruction, record.input)


@contextmanager
def _padding(tokenizer: Any, side: str) -> Iterator[Any]:
    """Temporarily set the tokenizer's padding side (and a pad token = EOS if it has none)."""
    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = old_pad


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def protocol_generation_config(model: Any, tokenizer: Any, num_beams: int = NUM_BEAMS,
                               max_new_tokens: int = MAX_NEW_TOKENS) -> Any:
    """The model's generation config with the protocol's search: ``num_beams`` beams, no sampling, one output."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    config = copy.deepcopy(base) if base is not None else GenerationConfig()
    config.do_sample = False
    config.num_beams = num_beams
    config.num_return_sequences = 1
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    config.min_new_tokens = None
    config.temperature = config.top_p = config.top_k = None
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if config.eos_token_id is None:
        config.eos_token_id = tokenizer.eos_token_id
    return config


def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int = 16,
    num_beams: int = NUM_BEAMS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    sort_by_length: bool = True,
    progress: bool = True,
) -> list[str]:
    """Generate a response to each prompt (beam search, no sampling) and return the decoded new tokens.

    Prompts are padded on the left within a batch; with ``sort_by_length`` they are grouped by token length
    (longest first, so an out-of-memory error shows in the first batch). The result is in the input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    prompts = list(prompts)
    if not prompts:
        return []
    from tqdm.auto import tqdm

    device = _model_device(model)
    responses: list[str | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    with _padding(tokenizer, "left"):
        config = protocol_generation_config(model, tokenizer, num_beams=num_beams, max_new_tokens=max_new_tokens)
        order = list(range(len(prompts)))
        if sort_by_length:
            lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
            order.sort(key=lambda i: -lengths[i])
        bar = tqdm(total=len(prompts), desc=f"generate ({num_beams} beams)", unit="prompt", disable=not progress)
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
                with torch.inference_mode():
                    out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                         generation_config=config)
                new_tokens = out[:, enc["input_ids"].shape[1]:]
                for i, text in zip(idx, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
                    responses[i] = text.strip()
                bar.update(len(idx))
        finally:
            bar.close()
            model.train(was_training)
    return [r if r is not None else "" for r in responses]


def record_prompts(records: Sequence[Record], prompt_fn: PromptFn | None = None) -> list[str]:
    """The prompt of each record (``prompt_fn`` or the LLM-Adapters template)."""
    fn = prompt_fn or default_prompt_fn
    return [fn(r) for r in records]


@dataclass
class GenerationEvaluation:
    """Result of :func:`evaluate_generation`: accuracy, and per item the response, extracted word and verdict."""

    accuracy: float
    responses: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"accuracy": self.accuracy, "responses": self.responses, "predictions": self.predictions,
                "correct": self.correct, "seconds": self.seconds}


def evaluate_generation(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    prompt_fn: PromptFn | None = None,
    task: str | None = None,
    batch_size: int = 16,
    num_beams: int = NUM_BEAMS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    progress: bool = True,
) -> GenerationEvaluation:
    """Score ``records`` under the LLM-Adapters protocol: generate, extract the first label word, exact match.

    ``task`` overrides each record's ``task`` for choosing the label words.
    """
    start = time.perf_counter()
    responses = generate_responses(model, tokenizer, record_prompts(records, prompt_fn), batch_size=batch_size,
                                   num_beams=num_beams, max_new_tokens=max_new_tokens, progress=progress)
    seconds = time.perf_counter() - start
    score = score_responses(records, responses, task=task)
    return GenerationEvaluation(accuracy=score.accuracy, responses=responses, predictions=score.predictions,
                                correct=score.correct, seconds=seconds)


@dataclass
class LoopComparison:
    """Batched generation against the batch-size-1 loop on the same prompts (performance target 4)."""

    n: int
    batch_size: int
    text_agreement: float
    answer_agreement: float | None
    batched_seconds: float
    loop_seconds: float
    speedup: float
    disagreements: list[int] = field(default_factory=list)
    batched_responses: list[str] = field(default_factory=list, repr=False)
    loop_responses: list[str] = field(default_factory=list, repr=False)


def compare_with_loop(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    batch_size: int = 16,
    task: str | None = None,
    num_beams: int = NUM_BEAMS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    progress: bool = False,
) -> LoopComparison:
    """Run the prompts batched and one at a time (the official loop); report agreement and the speed-up.

    ``text_agreement`` compares the decoded responses exactly; ``answer_agreement`` (when ``task`` is given)
    compares the extracted label words, which is what the score depends on. The two modes alternate batch by
    batch (the batches :func:`generate_responses` would form), so a change in machine load during the
    measurement affects both alike.
    """
    from tqdm.auto import tqdm

    from spectune.evaluation.answer_extraction import extract_answer

    prompts = list(prompts)
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    batched: list[str] = [""] * len(prompts)
    loop: list[str] = [""] * len(prompts)
    batched_s = loop_s = 0.0
    kwargs = dict(num_beams=num_beams, max_new_tokens=max_new_tokens, progress=False)
    bar = tqdm(total=len(prompts), desc="batched vs loop", unit="prompt", disable=not progress)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        chunk = [prompts[i] for i in idx]
        t0 = time.perf_counter()
        out_b = generate_responses(model, tokenizer, chunk, batch_size=batch_size, **kwargs)
        t1 = time.perf_counter()
        out_l = [generate_responses(model, tokenizer, [p], batch_size=1, **kwargs)[0] for p in chunk]
        t2 = time.perf_counter()
        batched_s, loop_s = batched_s + t1 - t0, loop_s + t2 - t1
        for i, b, one in zip(idx, out_b, out_l, strict=True):
            batched[i], loop[i] = b, one
        bar.update(len(idx))
    bar.close()
    n = len(prompts)
    same_text = [a == b for a, b in zip(batched, loop, strict=True)]
    answer_agreement = None
    if task is not None:
        same_answer = [extract_answer(task, a) == extract_answer(task, b) for a, b in zip(batched, loop, strict=True)]
        answer_agreement = sum(same_answer) / n if n else float("nan")
    return LoopComparison(
        n=n, batch_size=batch_size, text_agreement=sum(same_text) / n if n else float("nan"),
        answer_agreement=answer_agreement, batched_seconds=batched_s, loop_seconds=loop_s,
        speedup=loop_s / batched_s if batched_s > 0 else float("nan"),
        disagreements=[i for i, same in enumerate(same_text) if not same],
        batched_responses=batched, loop_responses=loop,
    )
