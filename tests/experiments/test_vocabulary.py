"""Table vocabulary comes from the method registry: no list of method names or labels in experiments/."""

from __future__ import annotations

import ast
from pathlib import Path

from experiments.report import vocabulary
from experiments.runs import canonical_method
from spectune.methods import REGISTRY, method_names

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_names_labels_and_order_are_the_registrys() -> None:
    assert vocabulary.method_names() == method_names()
    assert vocabulary.method_order() == (vocabulary.BASE, *method_names())
    for name in method_names():
        assert vocabulary.display_method(name) == REGISTRY[name].display
        assert vocabulary.method_description(name) == REGISTRY[name].description
        assert canonical_method(REGISTRY[name].display) == name  # "LoRA-Dash" → lora_dash
    assert vocabulary.display_method(vocabulary.BASE) == "base model (no fine-tuning)"
    assert vocabulary.display_method("dora") == "dora"  # not registered: as is


def test_spellings_and_ranks() -> None:
    assert canonical_method("Full FT") == canonical_method("fullft") == "full"
    assert canonical_method("PeriodicLoRA") == "plora"
    assert canonical_method("base") == "base" and canonical_method("") is None
    assert not vocabulary.has_rank("full") and not vocabulary.has_rank(vocabulary.BASE)
    assert vocabulary.has_rank("lora") and vocabulary.has_rank("lora_dash") and vocabulary.has_rank("plora")
    assert set(vocabulary.SPELLINGS) <= set(method_names())


def test_no_literal_list_of_method_names_in_experiments() -> None:
    """A tuple, list, set or dict-key literal of two or more registered method names is a second method list (the
    one exception: vocabulary.SPELLINGS, other spellings keyed by registered names, checked above)."""
    names = set(method_names())
    found = []
    for path in (REPO_ROOT / "experiments").rglob("*.py"):
        tree = ast.parse(path.read_text())
        allowed = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and any(isinstance(t, ast.Name) and t.id == "SPELLINGS" for t in n.targets)}
        for node in ast.walk(tree):
            if id(node) in allowed:
                continue
            elements = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else (
                node.keys if isinstance(node, ast.Dict) else [])
            strings = [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len([s for s in strings if s in names]) >= 2:
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {strings}")
    assert not found, found
