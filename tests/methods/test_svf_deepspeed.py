"""SVF under DeepSpeed ZeRO-2 and ZeRO-3 for real (2 gloo ranks on the CPU).

Checks: rank 0 fills the SVD cache and the other rank reads it (the same U, σ, V everywhere); z trains and ends equal
on both ranks; the expert written from the gathered state (ZeRO-3: the consolidated state dict, as
``Trainer.save_model`` passes it to the model's ``save_pretrained``) loads onto a fresh base with the engine's outputs,
on rank 0 alone while the process group is alive (as the recipe evaluates): that load must issue no collective.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.methods.distributed_helpers import Tiny, free_port


def _fresh() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def _worker(rank: int, port: int, stage: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo")
    import deepspeed

    from spectune.methods.lora_dash_layer import gathered
    from spectune.methods.svf import SVF, SvfSpec, svf_layers, write_expert
    from spectune.methods.svf_layer import U_BUF, Z
    from spectune.spectral import SVDCache

    folder = Path(out)
    spec = SvfSpec(target_modules=["proj"], form="official")
    cache = SVDCache(folder / "svd")
    model = SVF(spec, svd_cache=cache).attach(_fresh(), None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2, weight_decay=0.0)
    cfg = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
           "zero_optimization": {"stage": stage, "stage3_gather_16bit_weights_on_model_save": True},
           "zero_allow_untested_optimizer": True}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg, dist_init_required=False)
    layer = svf_layers(engine.module)[0][1]
    z = getattr(layer, Z)
    with gathered([z]):
        z0 = z.detach().clone()
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data, as in data-parallel training
    for _ in range(3):
        loss = engine(torch.randn(4, 16, generator=g)).pow(2).mean()
        engine.backward(loss)
        engine.step()
    with gathered([z]):
        z1 = z.detach().clone()
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = engine.module(x)
    state = engine._zero3_consolidated_16bit_state_dict() if stage == 3 else None  # collective
    result = {"z_changed": bool((z1 - z0).abs().max() > 1e-4), "z_sum": float(z1.double().sum()),
              "u_sum": float(getattr(layer, U_BUF).double().sum()), "hits": cache.hits, "misses": cache.misses}
    if rank == 0:
        write_expert(engine.module, folder / "expert", state)
        loaded = SVF(spec, svd_cache=cache).load_adapter(_fresh(), folder / "expert")
        with torch.no_grad():
            result["reload_max_diff"] = float((loaded(x) - y).abs().max())
    (folder / f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    # Results are written and the group is down: leave without the interpreter's C++ teardown, where DeepSpeed's
    # CPU communication threads once aborted a rank ("terminate called without an active exception", SIGABRT)
    # after a passing run. A failure before this line still raises and fails the test.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_svf_trains_saves_and_reloads_under_zero(tmp_path: Path, stage: int) -> None:
    mp.spawn(_worker, args=(free_port(), stage, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["misses"], r1["misses"]) == (1, 0) and r1["hits"] >= 1  # rank 0 decomposed, rank 1 read the cache
    assert r0["u_sum"] == r1["u_sum"]
    assert r0["z_changed"] and r0["z_sum"] == r1["z_sum"]
    assert r0["reload_max_diff"] < 1e-6
