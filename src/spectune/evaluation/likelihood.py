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

Requests are scored in batches padded on the right and sorted by length; only the continuation positions are
passed through ``log_softmax`` (in float32, or float64 for a float64 model), so memory does not grow with
vocabulary × sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spectune.data.records import Record


def _model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])


def encode_pair(tokenizer: Any, context: str, continuation: str,
                add_special_tokens: bool = False) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and of ``continuation`` as lm-eval splits them (see the module docstring)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    if context == "":
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], _encode(tokenizer, continuation, add_special_tokens)
    whole = _encode(tokenizer, context + continuation, add_special_tokens)
    context_ids = _encode(tokenizer, context, add_special_tokens)
    return whole[:len(context_ids)], whole[len(context_ids):]


def continuation_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 16,
    max_length: int | None = None,
    add_special_tokens: bool = False,
    progress: bool = False,
) -> list[float]:
    """Sum of log-probabilities (nats) of each continuation given its context, for (context, continuation) pairs.

    Batched with right padding, longest first; returns values in the input order.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if max_length is None:
        max_length = int(getattr(getattr(model, "config", None), "max_position_embeddings", 2048) or 2048)
    items: list[tuple[list[int], int]] = []  # (input ids, number of continuation tokens)
    for context, continuation in pairs:
        ctx, cont = encode_pair(tokenizer, context, continuation, add_special_tokens)
        if not cont:
            raise ValueError(f"Continuation {continuation!r} of context {context[-40:]!r} has no tokens to score.")
        if len(cont) > max_length:
            raise ValueError(f"A continuation of {len(cont)} tokens exceeds max_length={max_length}.")
        full = ctx + cont
        items.append((full[:-1][-max_length:] + [full[-1]], len(cont)))
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    device = _model_device(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = [0.0] * len(items)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(items), desc="log-likelihood", unit="request", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            seqs = [items[i][0] for i in idx]
            width = max(len(s) for s in seqs) - 1  # inputs drop each sequence's last token
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                input_ids[row, :len(seq) - 1] = torch.tensor(seq[:-1])
                attention[row, :len(seq) - 1] = 1
            with torch.inference_mode():
                logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            rows, cols, targets = [], [], []
            for row, (i, seq) in enumerate(zip(idx, seqs, strict=True)):
                n_cont = items[i][1]
                last = len(seq) - 1  # number of input positions of this row
                rows += [row] * n_cont
                cols += list(range(last - n_cont, last))
                targets += seq[-n_cont:]
            picked = logits[torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)]
            logp = torch.log_softmax(picked if picked.dtype == torch.float64 else picked.float(), dim=-1)
            token_lp = logp.gather(-1, torch.tensor(targets, device=logp.device)[:, None]).squeeze(-1)
            sums = torch.zeros(len(idx), dtype=torch.float64, device=token_lp.device)
            sums.index_add_(0, torch.tensor(rows, device=token_lp.device), token_lp.double())
            for row, i in enumerate(idx):
                scores[i] = float(sums[row])
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return scores


@dataclass
class MultipleChoiceResult:
    """Per-record log-likelihoods and predictions, with ``accuracy`` (lm-eval acc) and ``acc_norm``."""

    accuracy: float
    acc_norm: float
    predictions: list[int] = field(default_factory=list)
    predictions_norm: list[int] = field(default_factory=list)
    loglikelihoods: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"accuracy": self.accuracy, "acc_norm": self.acc_norm, "predictions": self.predictions,
                "predictions_norm": self.predictions_norm, "loglikelihoods": self.loglikelihoods}


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    records: Sequence[Record],
    batch_size: int = 16,
    target_delimiter: str = "",
    max_length: int | None = None,
    progress: bool = False,
) -> MultipleChoiceResult:
    """Log-likelihood multiple choice over records with ``context``, ``choices`` and gold ``label`` (an index).

    The scored continuation of a choice is ``target_delimiter + choice`` (records from ``spectune.data`` carry the
    leading space already; bare choices need ``target_delimiter=" "``).

    Records without a label still get predictions; accuracy counts labelled records only (``nan`` if none).
    """
    pairs: list[tuple[str, str]] = []
    for r in records:
        if r.context is None or not r.choices:
            raise ValueError(f"Record {r.task}/{r.id} needs `context` and `choices` for multiple choice.")
        pairs += [(r.context, target_delimiter + c) for c in r.choices]
    flat = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                                 progress=progress)
    lls: list[list[float]] = []
    pos = 0
    for r in records:
        lls.append(flat[pos:pos + len(r.choices)])
        pos += len(r.choices)
    preds, preds_norm, hits, hits_norm = [], [], [], []
    for r, ll in zip(records, lls, strict=True):
        arr = np.asarray(ll)
        lengths = np.asarray([float(max(len((target_delimiter + c).lstrip()), 1)) for c in r.choices])
        pred, pred_norm = int(np.argmax(arr)), int(np.argmax(arr / lengths))
        preds.append(pred)
        preds_norm.append(pred_norm)
        if r.label is not None:
            hits.append(pred == int(r.label))
            hits_norm.append(pred_norm == int(r.label))
    acc = float(np.mean(hits)) if hits else math.nan
    acc_norm = float(np.mean(hits_norm)) if hits_norm else math.nan
    return MultipleChoiceResult(accuracy=acc, acc_norm=acc_norm, predictions=preds, predictions_norm=preds_norm,
                                loglikelihoods=lls)


def bits_per_byte_per_item(model: Any, tokenizer: Any, contexts: Sequence[str], golds: Sequence[str],
                           batch_size: int = 16, max_length: int | None = None) -> list[float]:
    """Bits per UTF-8 byte of each gold continuation given its context."""
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    lls = continuation_logprobs(model, tokenizer, list(zip(contexts, golds, strict=True)), batch_size=batch_size,
                                max_length=max_length)
    return [-ll / math.log(2) / max(len(g.encode("utf-8")), 1) for ll, g in zip(lls, golds, strict=True)]


def gold_bits_per_byte(model: Any, tokenizer: Any, contexts: Sequence[str], golds: Sequence[str],
                       batch_size: int = 16, max_length: int | None = None) -> float:
    """Corpus bits per UTF-8 byte of the gold continuations: total bits over total bytes (lower is better)."""
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    if not golds:
        raise ValueError("No gold continuations to score.")
    lls = continuation_logprobs(model, tokenizer, list(zip(contexts, golds, strict=True)), batch_size=batch_size,
                                max_length=max_length)
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
               progress: bool = False) -> GoldLikelihood:
    """Negative log-likelihood per token and bits per byte of each gold continuation given its context.

    Tokens are counted as :func:`continuation_logprobs` scores them (:func:`encode_pair`); bytes are the UTF-8 bytes
    of the gold strings, leading delimiter included (as :func:`gold_bits_per_byte`).
    """
    if len(contexts) != len(golds):
        raise ValueError(f"{len(contexts)} contexts but {len(golds)} gold continuations.")
    if not golds:
        raise ValueError("No gold continuations to score.")
    pairs = list(zip(contexts, golds, strict=True))
    lls = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length,
                                add_special_tokens=add_special_tokens, progress=progress)
    counts = [len(encode_pair(tokenizer, c, g, add_special_tokens)[1]) for c, g in pairs]
    n_tokens, n_bytes = sum(counts), sum(len(g.encode("utf-8")) for g in golds)
    total = -sum(lls)
    return GoldLikelihood(nll_per_token=total / n_tokens, bits_per_byte=total / math.log(2) / n_bytes,
                          n_tokens=n_tokens, n_bytes=n_bytes, nll=[-x for x in lls], n_tokens_each=counts)
