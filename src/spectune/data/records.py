"""One record format for every task (commonsense, GLUE, math, code).

A ``Record`` carries every view of an example that a model family or a scorer needs, so that loaders,
trainers and scorers agree on one shape:

- sentence classification (encoders, GLUE): ``text`` / ``text_pair`` and ``label`` (int class, float for STS-B);
- LLM-Adapters generation (causal LMs, commonsense): ``instruction`` (``input`` optional), the response
  ``output`` ("the correct answer is solution1") and the label word ``answer`` ("solution1") that the scorer's
  regex extracts;
- log-likelihood multiple choice: ``context`` and ``choices`` with ``label`` the gold choice index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Record:
    """One example of one task. ``id`` is the index in the source split (written with every carve-out)."""

    task: str
    id: str
    label: int | float | None = None
    text: str | None = None
    text_pair: str | None = None
    instruction: str | None = None
    input: str | None = None
    output: str | None = None
    answer: str | None = None
    context: str | None = None
    choices: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``choices`` as a list)."""
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["choices"] = tuple(d.get("choices") or ())
        return cls(**d)
