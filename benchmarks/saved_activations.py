"""Bytes autograd keeps for backward in one training forward: a device-independent view of activation memory.

Counts every tensor saved for backward (``torch.autograd.graph.saved_tensors_hooks``), each storage once, for the
frozen model (the floor: no trainable parameter but an input that requires grad, as ``step_time.py``'s floor) and for
``method=lora`` through ``spectune.methods.build_method`` (PEFT's LoRA with the fused forward, or ``--plain`` for
PEFT's own), with and without dropout. Used to check where LoRA's peak memory over the floor goes
(``benchmarks/NOTES.md``, issue 11): the H200 run measured +2.96 GiB at LLaMA-3-8B shapes, 8 layers, 8 × 512.

    python benchmarks/saved_activations.py --layers 1 --batch 1 --seq 64    # LLaMA-3-8B block shapes, bf16, CPU
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch


def saved_bytes(model: torch.nn.Module, ids: torch.Tensor, grad_input: bool) -> int:
    """Bytes of the distinct storages autograd saves during one forward of ``model`` on ``ids``."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(grad_input)
    params = {id(p) for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(inputs_embeds=embeds).logits.float().sum()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters() if id(p) in params}
    return sum(n for ptr, n in seen.items() if ptr not in weights)  # parameters are not activations


def build(args: argparse.Namespace, dropout: float | None) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                      tie_word_embeddings=False, use_cache=False, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    for p in model.parameters():
        p.requires_grad_(False)
    if dropout is not None:
        from spectune.methods import build_method

        method = build_method("lora", r=args.r, alpha=2 * args.r, dropout=dropout,
                              target_modules=args.targets.split(","), fused=not args.plain)
        model = method.attach(model, "CAUSAL_LM") or model
    model.train()
    return model


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--intermediate", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,up_proj,down_proj")
    p.add_argument("--plain", action="store_true", help="PEFT's own LoRA forward (method.fused=false)")
    args = p.parse_args(argv)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    rows = {"floor": saved_bytes(build(args, None), ids, grad_input=True)}
    for d in (0.0, 0.05):
        rows[f"lora dropout {d}"] = saved_bytes(build(args, d), ids, grad_input=False)
    tokens = args.batch * args.seq
    print(f"saved for backward per token per layer (bf16, {args.layers} layer(s), {tokens} tokens, r {args.r}, "
          f"targets {args.targets}, {'PEFT forward' if args.plain else 'fused forward'}):")
    for name, n in rows.items():
        extra = n - rows["floor"]
        per = tokens * args.layers * 1024
        print(f"  {name:<18} {n / per:9.1f} KiB   over the floor {extra / per:+8.1f} KiB")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
