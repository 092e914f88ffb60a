"""Log-likelihood scoring: multiple choice (lm-eval's ``acc`` / ``acc_norm``) and gold bits per byte.

The protocol follows lm-evaluation-harness 0.4 (``lm_eval/api/task.py`` ``ConfigurableTask.construct_requests``
and ``process_results`` for ``output_type: multiple_choice``; ``lm_eval/models/huggingface.py``
``HFLM._encode_pair`` and ``_loglikelihood_tokens``):

- the request of choice ``c`` is (context, ``target_delimiter + c``). spectune's records already store each
  choice with lm-eval's delimiter (a leading space, ``spectune.data.commonsense.CHOICE_DELIMITER``), so the
  default ``target_delimiter`` here is ``""``; pass ``" "`` for bare lm-eval-style choices;
- trailing whitespace of the context moves to the front of the continuation; the continuation's tokens are the
  tokens of ``context + continuation`` after the first ``len(tokens(context))`` ones; no special tokens are
  added (lm-eval's default for causal LMs), and an empty context is replaced by the BOS (else EOS) token;
- the score is the sum of the continuation tokens' log-probabilities; inputs longer than ``max_length`` keep
  their last ``max_length`` tokens;
- ``acc``: argmax of the sums equals the gold index; ``acc_norm``: argmax of sum / length in characters of the
  choice without its leading delimiter whitespace (lm-eval divides by ``len(choice)`` of the bare choice).

Gold bits per byte (OLMo's ``bits_per_byte`` on a gold continuation, lm-eval's ``bits_per_byte`` aggregation):
``-Σ log p(gold tokens) / ln 2 / Σ UTF-8 bytes of the gold strings``; the signal that still moves when exact
match of a 135M model sits at zero.

Gold likelihood (:func:`score_gold`, GSM8K's score here): the same sums give the mean negative log-likelihood per
gold token (``Σ -log p / Σ tokens``, nats; depends on the tokenizer) and the gold bits per byte above.

Three scorers compute these sums (``mode``); all callers use ``"fast"`` unless told otherwise:

- ``"reference"``: one request at a time, no padding, no autocast, the model's own dtype (float32 as loaded) --
  the plain implementation the others are tested and benchmarked against;
- ``"batched"``: requests sorted by length and right-padded, ``batch_size`` sequences per forward (the scorer
  before issue 10);
- ``"fast"``: the context of an item is run **once** and shared by its choices. The requests whose context tokens
  are identical (``tokens(context + choice)[:len(tokens(context))]`` -- the split :func:`encode_pair` makes) are
  packed into one row: the context, then each choice's tokens but its last, each choice at the position ids it
  has in its own sequence and attending to the context and to itself only (a 4-D attention mask). Every scored
  token then sees exactly the tokens and positions it sees in the reference, so the sums agree up to float
  rounding. A choice whose boundary tokenises differently (the context's last token merges with the choice's
  first) forms its own row, as does a request longer than ``max_length`` (left-truncated like the reference);
  both are counted in :class:`ScoringStats`. Rows are sorted by length and filled up to ``max_batch_tokens``
  padded tokens per forward. Where the model's head is a plain linear map on the decoder's output (LLaMA-like
  models), only the scored positions go through it, in the head's own dtype (float32 for a float32 model under
  bf16 autocast); otherwise the model's full logits are indexed. Attention implementations other than eager /
  SDPA cannot take the 4-D mask: there the fast scorer shares nothing (every request its own row).

``precision`` (fast and batched): ``"auto"`` = the weights' own dtype, no autocast (measured on an H200 for SmolLM2,
``benchmarks/results/eval_speed_hellaswag_h200_5a62216.md``: packed fp32 scored 485-522 items/s with 100% identical
predictions; it leaves the global TF32 setting as it is); ``"fp32"`` = no autocast, CUDA matmuls in full float32
inside the call (also under a global TF32 setting); ``"tf32"`` = float32 weights and activations with CUDA float32
matmuls in TF32 (tensor cores, 10-bit mantissa inputs, float32 accumulation) inside the scoring call only
(:func:`tf32_matmuls`; no effect on a CPU); ``"bf16"`` = bf16 autocast on any device (for large float32 models).
Log-softmax always runs in float32 (float64 for a float64 model). Under tf32 or bf16, :func:`score_multiple_choice`
rescores in float32 the items whose best two choices (by sum, or by sum per character) lie closer than the
precision's error could move them (``recheck_margin``, :func:`recheck_bounds`), so its predictions stay those of
float32.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spectune.data.records import Record

logger = logging.getLogger(__name__)

MODES = ("fast", "batched", "reference")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
#: The precisions whose close calls :func:`score_multiple_choice` re-checks in float32.
LOW_PRECISIONS = ("tf32", "bf16")
#: Model types whose causal-LM head is ``lm_head(decoder(...).last_hidden_state)`` and nothing else.
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "phi3", "smollm3", "gemma"})
#: Config attributes that mean the head does more than a linear map (soft-capping, scaling).
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
#: Default token budget of one fast forward, per unit of ``batch_size``.
TOKENS_PER_BATCH_UNIT = 128
#: Default ``recheck_margin`` of each low precision (nats per sqrt(scored tokens + RECHECK_TOKENS)); see
#: :func:`recheck_bounds` for how they were measured.
RECHECK_MARGIN = {"bf16": 0.1, "tf32": 0.03}
#: The per-choice floor, in tokens, of the error model of :func:`recheck_bounds`.
RECHECK_TOKENS = 4
#: ``ScoringStats.precision`` of ``precision="tf32"``.
TF32_PRECISION = "float32, TF32 matmuls"


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32  # pragma: no cover


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def _move_spaces(context: str, continuation: str) -> tuple[str, str]:
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_pair(tokenizer: Any, context: str, continuation: str,
                add_special_tokens: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` as lm-eval splits them (see the module docstring)."""
    context, continuation = _move_spaces(context, continuation)
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], _encode(tokenizer, continuation, add_special_tokens)
    whole = _encode(tokenizer, context + continuation, add_special_tokens)
    context_ids = _encode(tokenizer, context, add_special_tokens)
    return whole[:len(context_ids)], whole[len(context_ids):]


def encode_pairs(tokenizer: Any, pairs: Sequence[tuple[str, str]],
                 add_special_tokens: bool = False) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_pair` of every pair, with one batched tokenizer call per kind of text (same ids)."""
    moved = [_move_spaces(c, x) for c, x in pairs]
    contexts = sorted({c for c, _ in moved if c != ""})
    ctx_len = dict(zip(contexts, (len(ids) for ids in _encode_batch(tokenizer, contexts, add_special_tokens)),
                       strict=True))
    wholes = _encode_batch(tokenizer, [c + x for c, x in moved], add_special_tokens)
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    out: list[tuple[list[int], list[int]]] = []
    for (context, _), whole in zip(moved, wholes, strict=True):
        if context == "":
            out.append(([prefix], whole))
        else:
            n = ctx_len[context]
            out.append((whole[:n], whole[n:]))
    return out


def _encode_batch(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]]


@dataclass
class ScoringStats:
    """What a scorer did: how many requests shared their context, fell back, and the forwards it ran."""

    mode: str
    precision: str = "model dtype"
    head: str = "full logits"
    n_requests: int = 0
    n_contexts: int = 0
    n_shared_requests: int = 0
    n_boundary_fallback: int = 0
    n_split_contexts: int = 0
    n_truncated: int = 0
    n_rechecked_items: int = 0
    recheck_margin: float | None = None
    n_forwards: int = 0
    n_tokens: int = 0
    n_padded_tokens: int = 0
    seconds: float = 0.0
    seconds_encode: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dict(vars(self))


@dataclass
class ContinuationScores:
    """Log-probability sums (nats) in the input order, and the :class:`ScoringStats` of the run."""

    logprobs: list[float]
    n_tokens: list[int]
    stats: ScoringStats


@dataclass
class _Row:
    """One sequence of a forward: a shared prefix, then segments (one per packed request)."""

    tokens: list[int]
    positions: list[int]
    segments: list[int]  # 0: the shared prefix; k >= 1: the k-th packed request's tokens
    scored: list[tuple[int, list[int], list[int]]]  # (request, input columns predicting, target ids)


def _rows(encoded: Sequence[tuple[list[int], list[int]]], max_length: int, share: bool,
          stats: ScoringStats) -> list[_Row]:
    """Group requests into rows (see the module docstring); updates the sharing counts of ``stats``."""
    rows: list[_Row] = []
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, cont) in enumerate(encoded):
        full = ctx + cont
        if len(full) - 1 > max_length:  # the reference keeps the last max_length inputs: a row of its own
            stats.n_truncated += 1
            inputs = full[:-1][-max_length:]
            n = len(inputs)
            rows.append(_Row(tokens=inputs, positions=list(range(n)), segments=[0] * n,
                             scored=[(i, list(range(n - len(cont), n)), cont)]))
            continue
        key = tuple(ctx) if share else (i, *ctx)
        groups.setdefault(key, []).append(i)
    for key, members in groups.items():
        prefix = list(key) if share else list(key[1:])
        n_prefix = len(prefix)
        tokens, positions, segments = list(prefix), list(range(n_prefix)), [0] * n_prefix
        scored = []
        for k, i in enumerate(members, start=1):
            cont = encoded[i][1]
            start = len(tokens)
            tokens += cont[:-1]
            positions += range(n_prefix, n_prefix + len(cont) - 1)
            segments += [k] * (len(cont) - 1)
            scored.append((i, [n_prefix - 1, *range(start, start + len(cont) - 1)], cont))
        rows.append(_Row(tokens=tokens, positions=positions, segments=segments, scored=scored))
        if share and len(members) > 1:
            stats.n_shared_requests += len(members)
    return rows


def _resolve_precision(model: torch.nn.Module, precision: str) -> tuple[torch.dtype | None, bool | None]:
    """(autocast dtype or None, TF32 setting for :func:`tf32_matmuls`) of ``precision``.

    ``"fp32"`` turns TF32 off inside the call (a global ``fp32_precision = "tf32"``, e.g. transformers' ``tf32=True``,
    would otherwise make the float32 scores -- and the float32 re-check -- TF32); ``"auto"`` and ``"bf16"`` leave
    the global setting as it is.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision == "bf16":
        return torch.bfloat16, None
    return None, {"tf32": True, "fp32": False}.get(precision)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool | None = True) -> Iterator[None]:
    """CUDA float32 matmuls in TF32 (``enabled=True``) or in full float32 (``False``) inside the block only.

    The previous setting is restored on exit, exceptions included; ``None`` changes nothing. torch >= 2.9 has
    ``torch.backends.cuda.matmul.fp32_precision`` (``"none"`` = inherit, ``"ieee"``, ``"tf32"``); there the new API
    is used both ways: once it has set a value, reading the legacy ``allow_tf32`` raises (torch 2.13: "mix of the
    legacy and new APIs"), and setting ``allow_tf32`` back turns ``"none"`` into ``"ieee"`` rather than restoring
    it. Older torch has only ``allow_tf32``. cuDNN's flag is left alone (no convolutions here); on a CPU the setting
    changes nothing.
    """
    if enabled is None:
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        name, value = "fp32_precision", "tf32" if enabled else "ieee"
    else:  # pragma: no cover - torch < 2.9
        name, value = "allow_tf32", bool(enabled)
    previous = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, previous)


def _head_route(model: Any) -> tuple[Any, Any] | None:
    """(decoder, head) when the logits are ``head(decoder(...).last_hidden_state)`` exactly, else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _HEAD_EXTRAS):
        return None
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):  # pragma: no cover - a model without the accessors
        return None
    if decoder is None or head is None or decoder is base:
        return None
    return decoder, head


def _packs(model: Any) -> bool:
    """Whether the model takes a custom 4-D attention mask (eager and SDPA attention do)."""
    config = getattr(model.get_base_model() if hasattr(model, "get_base_model") else model, "config", None)
    return getattr(config, "_attn_implementation", None) in ("eager", "sdpa")


def _batches(rows: Sequence[_Row], order: Sequence[int], max_rows: int | None,
             max_tokens: int | None) -> list[list[int]]:
    """Consecutive runs of ``order`` (longest first) under ``max_rows`` rows and ``max_tokens`` padded tokens."""
    out: list[list[int]] = []
    current: list[int] = []
    width = 0
    for r in order:
        n = len(rows[r].tokens)
        new_width = max(width, n)
        full_rows = max_rows is not None and len(current) >= max_rows
        full_tokens = max_tokens is not None and (len(current) + 1) * new_width > max_tokens
        if current and (full_rows or full_tokens):
            out.append(current)
            current, new_width = [], n
        current.append(r)
        width = new_width
    if current:
        out.append(current)
    return out


def _forward_rows(model: Any, rows: Sequence[_Row], pad_id: int, autocast: torch.dtype | None,
                  route: tuple[Any, Any] | None, scores: list[float], stats: ScoringStats) -> None:
    """Run one batch of rows and add each scored request's log-probability sum to ``scores``."""
    device = _model_device(model)
    width = max(len(r.tokens) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    seg = torch.full((n, width), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        k = len(r.tokens)
        ids[b, :k] = torch.tensor(r.tokens)
        pos[b, :k] = torch.tensor(r.positions)
        seg[b, :k] = torch.tensor(r.segments)
    ids, pos, seg = ids.to(device), pos.to(device), seg.to(device)
    if any(r.segments and r.segments[-1] > 1 for r in rows):  # a packed row: the 4-D mask
        q, kv = seg[:, :, None], seg[:, None, :]
        allowed = torch.ones(width, width, dtype=torch.bool, device=device).tril()[None]
        allowed = allowed & (kv >= 0) & ((kv == 0) | (kv == q))
        allowed = allowed | torch.eye(width, dtype=torch.bool, device=device)[None]  # padding sees itself
        mask: torch.Tensor = allowed[:, None]
        config = getattr(model.get_base_model() if hasattr(model, "get_base_model") else model, "config", None)
        if getattr(config, "_attn_implementation", None) == "eager":
            dtype = _model_dtype(model)
            mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
    else:
        mask = (seg >= 0).long()
    req_rows, req_cols, targets, owners = [], [], [], []
    for b, r in enumerate(rows):
        for i, cols, tgt in r.scored:
            req_rows += [b] * len(cols)
            req_cols += cols
            targets += tgt
            owners += [i] * len(cols)
    rows_t = torch.tensor(req_rows, device=device)
    cols_t = torch.tensor(req_cols, device=device)
    enabled = autocast is not None
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=enabled):
        if route is not None:
            decoder, head = route
            hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).last_hidden_state
            picked_hidden = hidden[rows_t, cols_t]
            with torch.autocast(device.type, enabled=False):
                weight = getattr(head, "weight", None)
                picked = head(picked_hidden.to(weight.dtype) if weight is not None else picked_hidden)
        else:
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
            picked = logits[rows_t, cols_t]
    with torch.inference_mode():
        logp = torch.log_softmax(picked if picked.dtype == torch.float64 else picked.float(), dim=-1)
        token_lp = logp.gather(-1, torch.tensor(targets, device=device)[:, None]).squeeze(-1)
    values = token_lp.double().cpu().tolist()
    for i, v in zip(owners, values, strict=True):
        scores[i] += v
    stats.n_forwards += 1
    stats.n_tokens += sum(len(r.tokens) for r in rows)
    stats.n_padded_tokens += n * width


def _reference(model: Any, encoded: Sequence[tuple[list[int], list[int]]], max_length: int, scores: list[float],
               stats: ScoringStats, bar: Any) -> None:
    """One request at a time, no padding and no autocast: the implementation the others are checked against."""
    device = _model_device(model)
    for i, (ctx, cont) in enumerate(encoded):
        full = ctx + cont
        inputs = full[:-1][-max_length:]
        stats.n_truncated += len(full) - 1 > max_length
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([inputs], device=device), use_cache=False).logits[0]
            picked = logits[len(inputs) - len(cont):]
            logp = torch.log_softmax(picked if picked.dtype == torch.float64 else picked.float(), dim=-1)
            token_lp = logp.gather(-1, torch.tensor(cont, device=device)[:, None]).squeeze(-1)
        scores[i] = float(token_lp.double().sum())
        stats.n_forwards += 1
        stats.n_tokens += len(inputs)
        stats.n_padded_tokens += len(inputs)
        bar.update(1)


def score_continuations(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = None,
    add_special_tokens: bool = False,
    progress: bool = False,
    mode: str = "fast",
    precision: str = "auto",
    max_batch_tokens: int | None = None,
) -> ContinuationScores:
    """Sum of log-probabilities (nats) of each continuation given its context, with the scorer's statistics.

    ``mode`` and ``precision`` as in the module docstring. ``batch_size``: sequences per forward (``"batched"``);
    the fast scorer fills each forward up to ``max_batch_tokens`` padded tokens (default ``batch_size`` × 128).
    """
    import time

    from tqdm.auto import tqdm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    _resolve_precision(model, precision)  # an unknown precision fails here, whatever the mode
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    t0 = time.perf_counter()
    if max_length is None:
        max_length = int(getattr(getattr(model, "config", None), "max_position_embeddings", 2048) or 2048)
    encoded = encode_pairs(tokenizer, pairs, add_special_tokens)
    seconds_encode = time.perf_counter() - t0
    for (context, continuation), (_, cont) in zip(pairs, encoded, strict=True):
        if not cont:
            raise ValueError(f"Continuation {continuation!r} of context {context[-40:]!r} has no tokens to score.")
        if len(cont) > max_length:
            raise ValueError(f"A continuation of {len(cont)} tokens exceeds max_length={max_length}.")
    stats = ScoringStats(mode=mode, n_requests=len(pairs), n_contexts=len({c for c, _ in pairs}),
                         seconds_encode=seconds_encode)
    scores = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(pairs), desc="log-likelihood", unit="request", disable=not progress)
    try:
        if mode == "reference":
            stats.precision = f"model dtype ({str(_model_dtype(model)).removeprefix('torch.')})"
            _reference(model, encoded, max_length, scores, stats, bar)
        else:
            autocast, tf32 = _resolve_precision(model, precision)
            dtype = str(_model_dtype(model)).removeprefix("torch.")
            stats.precision = ("bf16 autocast" if autocast is not None else TF32_PRECISION if tf32
                               else f"model dtype ({dtype})")
            share = mode == "fast" and _packs(model)
            route = _head_route(model) if mode == "fast" else None
            stats.head = "decoder, then the head on scored positions only" if route is not None else "full logits"
            rows = _rows(encoded, max_length, share, stats)
            if share:
                _count_boundary_fallbacks(pairs, encoded, stats)
            order = sorted(range(len(rows)), key=lambda r: -len(rows[r].tokens))
            if mode == "batched":
                batches = _batches(rows, order, max_rows=batch_size, max_tokens=None)
            else:
                budget = max_batch_tokens or batch_size * TOKENS_PER_BATCH_UNIT
                batches = _batches(rows, order, max_rows=None, max_tokens=budget)
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            with tf32_matmuls(tf32):
                for batch in batches:
                    chunk = [rows[r] for r in batch]
                    _forward_rows(model, chunk, pad_id, autocast, route, scores, stats)
                    bar.update(sum(len(r.scored) for r in chunk))
    finally:
        bar.close()
        model.train(was_training)
    stats.seconds = time.perf_counter() - t0
    return ContinuationScores(logprobs=scores, n_tokens=[len(c) for _, c in encoded], stats=stats)


def _count_boundary_fallbacks(pairs: Sequence[tuple[str, str]], encoded: Sequence[tuple[list[int], list[int]]],
                              stats: ScoringStats) -> None:
    """Contexts whose requests do not all share one context tokenisation, and the requests outside the majority."""
    by_context: dict[str, list[tuple[int, ...]]] = {}
    for (context, _), (ctx, _) in zip(pairs, encoded, strict=True):
        by_context.setdefault(context, []).append(tuple(ctx))
    for splits in by_context.values():
        distinct = {s: splits.count(s) for s in set(splits)}
        if len(distinct) > 1:
            stats.n_split_contexts += 1
            stats.n_boundary_fallback += len(splits) - max(distinct.values())


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = None,
    add_special_tokens: bool = False,
    progress: bool = False,
    mode: str = "fast",
    precision: str = "auto",
) -> list[float]:
    """Sum of log-probabilities (nats) of each continuation given its context, for (context, continuation) pairs.

    :func:`score_continuations` without the statistics; values in the input order.
    """
    return score_continuations(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                               add_special_tokens=add_special_tokens, progress=progress, mode=mode,
                               precision=precision).logprobs


@dataclass
class MultipleChoiceResult:
    """Per-record log-likelihoods and predictions, ``accuracy`` (lm-eval acc), ``acc_norm`` and the scorer's stats."""

    accuracy: float
    acc_norm: float
    predictions: list[int] = field(default_factory=list)
    predictions_norm: list[int] = field(default_factory=list)
    loglikelihoods: list[list[float]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"accuracy": self.accuracy, "acc_norm": self.acc_norm, "predictions": self.predictions,
                "predictions_norm": self.predictions_norm, "loglikelihoods": self.loglikelihoods,
                "stats": self.stats}


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    batch_size: int = 16,
    target_delimiter: str = "",
    max_length: int | None = None,
    progress: bool = False,
    mode: str = "fast",
    precision: str = "auto",
    recheck_margin: float | None = None,
    max_batch_tokens: int | None = None,
) -> MultipleChoiceResult:
    """Log-likelihood multiple choice over records with ``context``, ``choices`` and gold ``label`` (an index).

    The scored continuation of a choice is ``target_delimiter + choice`` (records from ``spectune.data`` carry the
    leading space already; bare choices need ``target_delimiter=" "``).

    Records without a label still get predictions; accuracy counts labelled records only (``nan`` if none).
    ``mode`` / ``precision`` as in the module docstring. When the scores came from tf32 or bf16, every item where a
    choice other than the best lies within the two choices' error bounds of it (by sum, or by sum per character) is
    rescored in float32, so that the predictions are float32's; ``stats.n_rechecked_items`` counts them. A choice's
    bound is ``recheck_margin * sqrt(scored tokens + 4)`` nats (:func:`recheck_bounds`); ``recheck_margin`` defaults
    to the precision's :data:`RECHECK_MARGIN`; 0 re-checks nothing, a huge value every item.
    """
    pairs: list[tuple[str, str]] = []
    for r in records:
        if r.context is None or not r.choices:
            raise ValueError(f"Record {r.task}/{r.id} needs `context` and `choices` for multiple choice.")
        pairs += [(r.context, target_delimiter + c) for c in r.choices]
    scored = score_continuations(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                                 progress=progress, mode=mode, precision=precision, max_batch_tokens=max_batch_tokens)
    flat, stats = scored.logprobs, scored.stats
    starts = np.cumsum([0] + [len(r.choices) for r in records])
    lengths = [np.asarray([float(max(len((target_delimiter + c).lstrip()), 1)) for c in r.choices]) for r in records]
    low = mode != "reference" and precision in LOW_PRECISIONS
    margin = (RECHECK_MARGIN[precision] if recheck_margin is None else float(recheck_margin)) if low else None
    if margin is not None and margin < 0:
        raise ValueError(f"recheck_margin must be >= 0, got {recheck_margin}.")
    stats.recheck_margin = margin
    if margin:
        bounds = recheck_bounds(scored.n_tokens, margin)
        close = [k for k in range(len(records))
                 if _close_call(np.asarray(flat[starts[k]:starts[k + 1]]), lengths[k], bounds[starts[k]:starts[k + 1]])]
        if close:
            again = [pairs[j] for k in close for j in range(starts[k], starts[k + 1])]
            redo = score_continuations(model, tokenizer, again, batch_size=batch_size, max_length=max_length,
                                       mode=mode, precision="fp32", max_batch_tokens=max_batch_tokens)
            pos = 0
            for k in close:
                n = int(starts[k + 1] - starts[k])
                flat[starts[k]:starts[k + 1]] = redo.logprobs[pos:pos + n]
                pos += n
            stats.n_rechecked_items = len(close)
            stats.n_forwards += redo.stats.n_forwards
            stats.seconds += redo.stats.seconds
    logger.info("log-likelihood multiple choice: %d items, %d requests (%s, %s): %d shared their context, %d fell back "
                "at the token boundary, %d truncated, %d items re-checked in float32; %.1f s", len(records),
                stats.n_requests, stats.mode, stats.precision, stats.n_shared_requests, stats.n_boundary_fallback,
                stats.n_truncated, stats.n_rechecked_items, stats.seconds)
    lls = [flat[starts[k]:starts[k + 1]] for k in range(len(records))]
    preds, preds_norm, hits, hits_norm = [], [], [], []
    for r, ll, length in zip(records, lls, lengths, strict=True):
        arr = np.asarray(ll)
        pred, pred_norm = int(np.argmax(arr)), int(np.argmax(arr / length))
        preds.append(pred)
        preds_norm.append(pred_norm)
        if r.label is not None:
            hits.append(pred == int(r.label))
            hits_norm.append(pred_norm == int(r.label))
    acc = float(np.mean(hits)) if hits else math.nan
    acc_norm = float(np.mean(hits_norm)) if hits_norm else math.nan
    return MultipleChoiceResult(accuracy=acc, acc_norm=acc_norm, predictions=preds, predictions_norm=preds_norm,
                                loglikelihoods=lls, stats=stats.to_dict())


def recheck_bounds(n_tokens: Sequence[int], margin: float) -> np.ndarray:
    """How far (nats) a low-precision sum of ``n`` scored tokens may lie from float32's: ``margin * sqrt(n + 4)``.

    Why this form: the error of a choice's summed log-probability under bf16 autocast or TF32 matmuls behaves like a
    random walk over its tokens plus a floor shared with the context. Measured on the CPU
    (``benchmarks/recheck_rule.py``: SmolLM2-135M, the first 200 HellaSwag and 200 ARC-Easy items, 1,601 choices,
    each sum against the same scorer in float32; TF32 emulated by rounding, or truncating, every linear layer's
    inputs to 10 mantissa bits), the mean squared error fits ``a + b n`` with ``b`` = 7.1e-4 / 7.7e-4 (bf16;
    HellaSwag / ARC-Easy), 8.9e-6 / 5.3e-6 (TF32 rounded), 3.9e-5 / 2.0e-5 (TF32 truncated) and ``a / b`` of 0-9
    tokens: under bf16 the largest |error| / n falls from 0.06-0.16 (1-5 tokens) to 0.011 (25+ tokens) while |error|
    / sqrt(n) stays within 0.05-0.16. A fixed margin is therefore loose for short choices (ARC-Easy, median 3
    tokens: 23% of the items re-checked by the old rule, 0.5 nats between the best two) and too tight for long ones
    (HellaSwag, median 12 tokens: 13 of 800 bf16 sums moved further than its 0.25 nats per choice). With the
    defaults (:data:`RECHECK_MARGIN`: bf16 0.1, TF32 0.03) no bf16 or rounded-TF32 sum of the 1,601 exceeded its
    bound (the largest reached 99% / 38% of it); truncated TF32 exceeded it in 2 sums (1.74 times), both choices of
    one ARC-Easy item, moved together so that their difference stayed within it. Beyond the bound the rule is
    conservative: an item is re-checked when the gap between its best and any other choice is at most the sum of
    both bounds, i.e. whenever errors of opposite signs at the bounds could swap them. ``benchmarks/eval_speed.py``
    re-measures the bounds on the GPU (``bound_check`` of its rows without re-check).
    """
    return margin * np.sqrt(np.asarray(n_tokens, dtype=float) + RECHECK_TOKENS)


def _close_call(ll: np.ndarray, length: np.ndarray, bound: np.ndarray | float) -> bool:
    """Whether moving each sum by its ``bound`` could change the argmax of the sums or of the sums per character."""
    if len(ll) < 2:
        return False
    bound = np.broadcast_to(np.asarray(bound, dtype=float), ll.shape)
    best = int(np.argmax(ll))
    others = np.arange(len(ll)) != best
    if np.any(ll[best] - ll[others] <= bound[best] + bound[others]):
        return True
    norm = ll / length
    best = int(np.argmax(norm))
    others = np.arange(len(ll)) != best
    slack = bound[best] / length[best] + bound[others] / length[others]
    return bool(np.any(norm[best] - norm[others] <= slack))


def bits_per_byte_per_item(model: Any, tokenizer: Any, contexts: Sequence[str], golds: Sequence[str],
                           batch_size: int = 16, max_length: int | None = None, mode: str = "fast",
                           precision: str = "auto") -> list[float]:
    """Bits per UTF-8 byte of each gold continuation given its context."""
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    lls = continuation_logprobs(model, tokenizer, list(zip(contexts, golds, strict=True)), batch_size=batch_size,
                                max_length=max_length, mode=mode, precision=precision)
    return [-ll / math.log(2) / max(len(g.encode("utf-8")), 1) for ll, g in zip(lls, golds, strict=True)]


def gold_bits_per_byte(model: Any, tokenizer: Any, contexts: Sequence[str], golds: Sequence[str],
                       batch_size: int = 16, max_length: int | None = None, mode: str = "fast",
                       precision: str = "auto") -> float:
    """Corpus bits per UTF-8 byte of the gold continuations: total bits over total bytes (lower is better)."""
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    if not golds:
        raise ValueError("No gold continuations to score.")
    lls = continuation_logprobs(model, tokenizer, list(zip(contexts, golds, strict=True)), batch_size=batch_size,
                                max_length=max_length, mode=mode, precision=precision)
    total_bytes = sum(len(g.encode("utf-8")) for g in golds)
    return -sum(lls) / math.log(2) / total_bytes


@dataclass
class GoldLikelihood:
    """Likelihood of gold continuations: corpus ``nll_per_token`` (nats) and ``bits_per_byte``; lower is better.

    ``nll`` / ``n_tokens_each`` are per item (the summed negative log-likelihood in nats and the number of scored
    continuation tokens); ``n_tokens`` / ``n_bytes`` are the corpus totals the two ratios divide by.
    """

    nll_per_token: float
    bits_per_byte: float
    n_tokens: int
    n_bytes: int
    nll: list[float] = field(default_factory=list)
    n_tokens_each: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"nll_per_token": self.nll_per_token, "bits_per_byte": self.bits_per_byte, "n_tokens": self.n_tokens,
                "n_bytes": self.n_bytes, "nll": self.nll, "n_tokens_each": self.n_tokens_each}


def score_gold(model: Any, tokenizer: Any, contexts: Sequence[str], golds: Sequence[str], batch_size: int = 16,
               max_length: int | None = None, add_special_tokens: bool = False,
               progress: bool = False, mode: str = "fast", precision: str = "auto") -> GoldLikelihood:
    """Negative log-likelihood per token and bits per byte of each gold continuation given its context.

    Tokens are counted as :func:`continuation_logprobs` scores them (:func:`encode_pair`); bytes are the UTF-8 bytes
    of the gold strings, leading delimiter included (as :func:`gold_bits_per_byte`). ``mode`` / ``precision`` as in
    the module docstring.
    """
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    if not golds:
        raise ValueError("No gold continuations to score.")
    pairs = list(zip(contexts, golds, strict=True))
    scored = score_continuations(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                                 add_special_tokens=add_special_tokens, progress=progress, mode=mode,
                                 precision=precision)
    lls, counts = scored.logprobs, scored.n_tokens
    n_tokens, n_bytes = sum(counts), sum(len(g.encode("utf-8")) for g in golds)
    total = -sum(lls)
    return GoldLikelihood(nll_per_token=total / n_tokens, bits_per_byte=total / math.log(2) / n_bytes,
                          n_tokens=n_tokens, n_bytes=n_bytes, nll=[-x for x in lls], n_tokens_each=counts)
