"""Write a random-init LLaMA-shaped causal LM (LLaMA-3-8B's shapes by default, cut to ``--layers`` blocks) with
SmolLM2's embedded tokenizer into a folder that ``spectune.train model=llama_shape model.name_or_path=<folder>``
loads like any local model (conf/model/llama_shape.yaml). Same ``--seed``, same weights: a 1-GPU and a 2-GPU run
start from one model, and evaluation's reload of the base (spectune.training.artifacts) finds the same folder.

    python scripts/gpu/llama_shape_model.py --out runs/llama_shape_model --layers 4
    python scripts/gpu/llama_shape_model.py --out /tmp/tiny --layers 2 --hidden 64 --intermediate 128 --heads 4 \
        --kv-heads 2        # the CPU test's size
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def write_model(out: Path, layers: int, hidden: int = 4096, intermediate: int = 14336, heads: int = 32,
                kv_heads: int = 8, vocab: int = 128256, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """Create the folder (config, safetensors weights, tokenizer); returns it. The vocabulary must hold the
    tokenizer's ids (SmolLM2: 49152)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from spectune.models.loading import load_model_and_tokenizer

    _, tok = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=1)
    if vocab < len(tok):
        raise SystemExit(f"--vocab {vocab} is smaller than the tokenizer's {len(tok)} ids; raise --vocab.")
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                      max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "llama_shape.json").write_text(json.dumps({"layers": layers, "hidden": hidden,
                                                      "intermediate": intermediate, "heads": heads,
                                                      "kv_heads": kv_heads, "vocab": vocab, "seed": seed,
                                                      "dtype": dtype}, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    a = p.parse_args(argv)
    write_model(a.out, a.layers, a.hidden, a.intermediate, a.heads, a.kv_heads, a.vocab, a.seed, a.dtype)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
