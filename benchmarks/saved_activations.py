"""Bytes autograd keeps for backward in one training forward: a device-independent view of activation memory.

Counts every tensor saved for backward (``torch.autograd.graph.saved_tensors_hooks``), each storage once, for the
frozen model (the floor: no trainable parameter but an input that requires grad, as ``step_time.py``'s floor) and for
``method=lora`` through ``spectune.methods.build_method`` (PEFT's LoRA with the fused forward, or ``--plain`` for
PEFT's own), with and without dropout. Used to check where LoRA's peak memory over the floor goes
(``benchmarks/NOTES.md``, issue 11): the H200 run measured +2.96 GiB at LLaMA-3-8B shapes, 8 layers, 8 × 512.

    python benchmarks/saved_activations.py --layers 1 --batch 1 --seq 64    # LLaMA-3-8B block shapes, bf16, CPU

``--compiled`` counts what the *compiled* step keeps instead: ``torch.compile`` through AOTAutograd with inductor's
decompositions and min-cut partitioner (what inductor saves between its forward and backward graphs, recomputing
cheap pointwise work in backward), eager kernels, so no code generation and no GPU: the backward graph's saved
inputs other than parameters and the graph's inputs, from their shapes. Only the per-token part matters at
benchmark scale (run two ``--seq`` values and take the difference: the r × d casts of the adapters are per step).

``--packed-draw`` draws the LoRA rows' masks as the compiled step does on CUDA (``spectune::keep_bits``, a CPU stand-in
for the kernel), so the partitioner's choice for that graph can be checked without a GPU (with ``--compiled``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
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


def compiled_saved_bytes(model: torch.nn.Module, ids: torch.Tensor, grad_input: bool) -> int:
    """Bytes the compiled forward of ``model`` on ``ids`` saves for its backward (inductor's partitioner)."""
    from torch._functorch.aot_autograd import aot_module_simplified
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    from torch._inductor.decomposition import select_decomp_table

    total = [0]

    def backward_inputs(gm: torch.fx.GraphModule, _: Any) -> torch.fx.GraphModule:
        for node in gm.graph.nodes:  # saved activations; primals_* are parameters, buffers and the inputs
            val = node.meta.get("val")
            if node.op == "placeholder" and not node.name.startswith(("tangents", "primals")) \
                    and isinstance(val, torch.Tensor):
                total[0] += val.numel() * val.element_size()
        return gm

    def backend(gm: torch.fx.GraphModule, example: Any) -> Any:
        return aot_module_simplified(gm, example, fw_compiler=lambda g, _: g, bw_compiler=backward_inputs,
                                     decompositions=select_decomp_table(),
                                     partition_fn=min_cut_rematerialization_partition)

    torch._dynamo.reset()
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(grad_input)
    step = torch.compile(lambda e: model(inputs_embeds=e).logits.float().sum(), backend=backend)
    step(embeds).backward()  # the backward graph is compiled (and counted) at its first call
    torch._dynamo.reset()
    return total[0]


@torch.library.custom_op("spectune_bench::keep_bits", mutates_args=())
def standin_keep_bits(seed: torch.Tensor, numel: int, p: float) -> torch.Tensor:
    """A CPU stand-in for the CUDA operator ``spectune::keep_bits`` (``--packed-draw``): the same graph, an opaque
    operator from a key tensor to packed keep bits, drawn here with ``torch.rand`` (the kernel itself is tested in
    tests/methods/test_dropout_bits.py)."""
    from spectune.methods.lora_fused import pack_mask

    return pack_mask(torch.rand(numel, generator=torch.Generator().manual_seed(int(seed.item()))) >= p)


@standin_keep_bits.register_fake
def _(seed: torch.Tensor, numel: int, p: float) -> torch.Tensor:
    return seed.new_empty((numel + 7) // 8, dtype=torch.uint8)


@contextlib.contextmanager
def packed_draw() -> Iterator[None]:
    """Route the fused layers' dropout masks through the packed draw that runs compiled on CUDA
    (``lora_fused.packed_draw``), with :func:`standin_keep_bits` for the kernel, so a CPU run sees that graph."""
    from spectune.methods import dropout_bits, lora_fused

    saved = lora_fused.packed_draw, dropout_bits.keep_bits
    lora_fused.packed_draw = lambda x: True
    dropout_bits.keep_bits = lambda numel, p, device: standin_keep_bits(dropout_bits.new_seed(device), numel, p)
    try:
        yield
    finally:
        lora_fused.packed_draw, dropout_bits.keep_bits = saved


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
    p.add_argument("--compiled", action="store_true",
                   help="what the compiled step saves (inductor's decompositions and partitioner, eager kernels)")
    p.add_argument("--packed-draw", action="store_true",
                   help="draw the LoRA rows' masks as compiled on CUDA (spectune::keep_bits, a CPU stand-in here)")
    args = p.parse_args(argv)
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    count = compiled_saved_bytes if args.compiled else saved_bytes
    rows = {"floor": count(build(args, None), ids, grad_input=True)}
    with packed_draw() if args.packed_draw else contextlib.nullcontext():
        for d in (0.0, 0.05):
            rows[f"lora dropout {d}"] = count(build(args, d), ids, grad_input=False)
    tokens = args.batch * args.seq
    print(f"saved for backward per token per layer (bf16, {args.layers} layer(s), {tokens} tokens, r {args.r}, "
          f"targets {args.targets}, {'PEFT forward' if args.plain else 'fused forward'}"
          f"{', compiled (inductor partitioner)' if args.compiled else ''}"
          f"{', masks drawn packed (spectune::keep_bits stand-in)' if args.packed_draw else ''}):")
    for name, n in rows.items():
        extra = n - rows["floor"]
        per = tokens * args.layers * 1024
        print(f"  {name:<18} {n / per:9.1f} KiB   over the floor {extra / per:+8.1f} KiB")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
