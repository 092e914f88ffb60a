"""One spectral lens over every method (issue 9): ``python -m spectune.analyze`` on a run of any method, the SVF
closed form δ_i = |s_i/σ_i − 1| against the generic path, and ``--compare`` overlaps of hand-made runs whose
most-changed directions are known.

Run folders are built by hand (no training): MiniLM cut to 2 layers, SST-2's config, every method on the SVF "mlp"
matrices (intermediate.dense, each layer's output.dense), its parameters set to known values, saved with
``method.save`` beside the composed ``config.yaml``, then analysed through the method's loader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from spectune.analyze import RunUpdate, _check_same_base, main
from spectune.methods.svf_layer import SVFLinear
from spectune.spectral import change_rates, svd
from spectune.spectral.lens import compare_rates, is_zero_update, svf_rates, topk_overlap, update_rates

MLP = r".*\.(intermediate\.dense|layer\.\d+\.output\.dense)"
KNOWN = [0, 3]            # the directions the SVF expert and the matching LoRA run change
DISJOINT = [1, 5]         # the directions of the LoRA run that shares none of them
TRUE = [0, 3, 7, 9]       # the reference's (full fine-tuning) changed directions, rates decreasing in this order


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine a 2-thread LAPACK SVD of a 1536×384 matrix took 5–11 s
    (threads spinning against other processes) where one thread takes 0.2 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------- pure tensors
@pytest.mark.parametrize("form", ["paper", "official"])
def test_svf_closed_form_equals_the_generic_path_float64(form: str) -> None:
    """ΔW = U diag(s − σ) Vᵀ on W's own basis: δ_i = |s_i/σ_i − 1| (paper: |z_i − 1|) to float64 round-off."""
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 20, generator=g, dtype=torch.float64)
    F = svd(W, torch.float64)
    official = form == "official"
    p = torch.randn(12, generator=g) * (1.0 if official else 0.3) + (0.1 if official else 1.0)
    layer = SVFLinear(F.U, F.S, F.Vh, None, p, mapping="sigmoid" if official else "identity", rescale=official)
    z = layer.multipliers().detach().double()  # the paper's z: p, or sigmoid(p) (max_mult 1)
    closed = svf_rates(F.S, z, rescale=official)

    dense = update_rates(W, layer.dense_weight(torch.float64) - W, svd=F)
    s = layer.scale().detach().double()
    lowrank = update_rates(W, (F.U * (s - F.S), F.Vh), svd=F)  # update_factors' form, in float64
    np.testing.assert_allclose(dense.numpy(), closed.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lowrank.numpy(), closed.numpy(), rtol=0, atol=1e-12)
    if official:
        # The Σσ rescale makes s_i = σ_i·m_i·Σσ/Σσm: δ_i = |s_i/σ_i − 1|, not |m_i − 1|; a constant m changes nothing.
        expect = (z * F.S.sum() / (F.S * z).sum() - 1).abs()
        np.testing.assert_allclose(closed.numpy(), expect.numpy(), atol=1e-14)
        assert (closed - (z - 1).abs()).abs().max() > 0.1
        assert svf_rates(F.S, torch.full((12,), 0.52), rescale=True).abs().max() < 1e-14
    else:
        np.testing.assert_allclose(closed.numpy(), (z - 1).abs().numpy(), atol=1e-15)


def test_svf_update_factors_match_the_closed_form() -> None:
    """Through ``SVF.update_factors`` (fp32 factors from the fp32 SVD) on a float64 basis: agreement to ~1e-6."""
    from spectune.methods.svf import SVF, SvfSpec, svf_layers

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 12))
    W = model[0].weight.detach().double().clone()
    method = SVF(SvfSpec(target_modules=["0"], form="official", svd_cache=False, svd_device="cpu"))
    method.attach(model, None)
    (_, layer), = svf_layers(model)
    with torch.no_grad():
        layer.svf_z.copy_(torch.randn(12))
    (name, (B, A)), = method.update_factors(model).items()
    generic = update_rates(W, (B, A))
    closed = svf_rates(layer.svf_S, layer.multipliers(), rescale=True)
    np.testing.assert_allclose(generic.numpy(), closed.numpy(), rtol=0, atol=1e-5)


def _on_directions(F, idx: list[int], c: list[float]) -> torch.Tensor:
    return (F.U[:, idx] * torch.tensor(c, dtype=F.U.dtype)) @ F.Vh[idx]


def test_compare_rates_on_known_directions() -> None:
    """An SVF z ≠ 1 exactly on {0, 3} vs LoRA's U[:, {0,3}] diag(c) V[:, {0,3}]ᵀ: overlap 1; disjoint sets: 0."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(30, 20, generator=g, dtype=torch.float64)
    F = svd(W, torch.float64)
    z = torch.ones(20, dtype=torch.float64)
    z[KNOWN] = torch.tensor([1.5, 0.7], dtype=torch.float64)
    svf = svf_rates(F.S, z)
    assert sorted(torch.nonzero(svf).flatten().tolist()) == KNOWN
    lora = update_rates(W, (F.U[:, KNOWN] * torch.tensor([0.2, -0.4], dtype=torch.float64), F.Vh[KNOWN]), svd=F)
    other = update_rates(W, _on_directions(F, DISJOINT, [0.3, 0.1]), svd=F)
    same = compare_rates(svf, lora, k=2)
    assert same is not None and same["overlap"] == 1.0 and same["shared"] == 2 and same["accuracy"] == 1.0
    assert same["chance"] == 2 / 20  # random k-subsets of n directions: E|A ∩ B| = k²/n, i.e. overlap k/n
    assert compare_rates(svf, other, k=2)["overlap"] == 0.0
    assert topk_overlap(svf, lora, 2) == 1.0
    # k clipped to the number of directions; a zero update has no top-k
    assert compare_rates(svf, lora, k=99)["k"] == 20
    assert compare_rates(svf, torch.zeros(20), k=2) is None and is_zero_update(torch.zeros(20))


def test_two_runs_of_different_bases_are_refused() -> None:
    w = torch.randn(6, 4)

    def run(weight: torch.Tensor, base: str) -> RunUpdate:
        return RunUpdate(Path(base), Path(base), "lora", "LoRA", base, "lowrank", {"m": torch.zeros(6, 4)},
                         {"m": weight})

    assert _check_same_base(run(w, "a"), run(w.clone(), "a"), ["m"]) == 0.0
    with pytest.raises(SystemExit, match="do not share a base model"):
        _check_same_base(run(w, "a"), run(w + 0.5 * torch.randn(6, 4), "b"), ["m"])


# ------------------------------------------------------------------------------------------------- run folders
def _compose(method: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    from spectune.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose("config", overrides=["model=minilm", "model.num_layers=2", "task=glue/sst2",
                                            f"method={method}", *overrides])


def _save_config(cfg, run: Path) -> None:
    from spectune.config import to_container

    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_container(cfg), sort_keys=False))


def _dense_rates(w0: dict[str, torch.Tensor], merged: nn.Module, svds: dict) -> dict[str, torch.Tensor]:
    """Independent expectation: δ of W_merged − W_0 (dense, on the float64 SVD of W_0), per matrix of ``w0``."""
    mods = dict(merged.named_modules())
    return {n: change_rates(w, mods[n].weight.detach().double() - w.double(), svd=svds[n]) for n, w in w0.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Run folders of lora (directions KNOWN), lora_far (DISJOINT), lora_dash, plora, svf (z ≠ 1 on KNOWN) and full
    (TRUE), each with the rates its merged model gives (the expectation the CLI must reproduce)."""
    from peft.tuners.lora import Linear as LoraLinear

    from spectune.config import method_kwargs
    from spectune.methods import build_method
    from spectune.methods.lora import lora_layers
    from spectune.methods.lora_dash_layer import DELTA
    from spectune.methods.svf import svf_layers
    from spectune.training.artifacts import load_base

    root = tmp_path_factory.mktemp("lens")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECTUNE_CACHE", str(root / "cache"))
        torch.manual_seed(0)
        out: dict[str, dict] = {}
        svds: dict = {}
        mlp = ["method.targets=mlp"]
        specs = {"lora": ("lora", [*mlp, "method.r=2"]), "lora_far": ("lora", [*mlp, "method.r=2"]),
                 "lora_dash": ("lora_dash", [*mlp, "method.r=2", "method.s=2", "method.t=1"]),
                 "plora": ("plora", [*mlp, "method.r=2", "method.unload_every=1"]),
                 "svf": ("svf", [*mlp, "method.svd_device=cpu"]), "full": ("full", [])}
        for key, (name, overrides) in specs.items():
            cfg = _compose(name, *overrides)
            run = root / key
            _save_config(cfg, run)
            method = build_method(name, **method_kwargs(cfg))
            base = load_base(cfg)[0]
            w0 = {n: m.weight.detach().clone() for n, m in base.named_modules()
                  if isinstance(m, nn.Linear) and re.fullmatch(MLP, n)}
            svds = svds or {n: svd(w, torch.float64) for n, w in w0.items()}  # one base model for all runs
            model = method.attach(base, "SEQ_CLS")
            with torch.no_grad():
                if name in ("lora", "lora_dash", "plora"):
                    for lname, layer in lora_layers(model):
                        assert isinstance(layer, LoraLinear)
                        n = lname.removeprefix("base_model.model.")
                        if key in ("lora", "lora_far"):  # s·B A = U_S diag(c) V_Sᵀ exactly (fp32)
                            F, idx = svds[n], KNOWN if key == "lora" else DISJOINT
                            s = float(layer.scaling["default"])
                            layer.lora_B["default"].weight.copy_((F.U[:, idx] * torch.tensor([0.2, -0.4])) / s)
                            layer.lora_A["default"].weight.copy_(F.Vh[idx])
                        else:
                            layer.lora_B["default"].weight.normal_(0, 0.02)
                    if name == "lora_dash":
                        method.switch(model)
                        for _, layer in lora_layers(model):
                            getattr(layer, DELTA)["default"].copy_(torch.tensor([0.05, -0.03]))
                    if name == "plora":
                        method.unload(model, step=1)
                        for _, layer in lora_layers(model):
                            layer.lora_B["default"].weight.normal_(0, 0.02)
                elif name == "svf":
                    for _, layer in svf_layers(model):
                        layer.svf_z[KNOWN] = torch.tensor([1.5, 0.7])
                else:  # full: W* = W + Σ_{i ∈ TRUE} σ_i·r_i u_i v_iᵀ, rates r = 0.4, 0.3, 0.2, 0.1
                    mods = dict(model.named_modules())
                    for n, F in svds.items():
                        c = [float(F.S[i]) * r for i, r in zip(TRUE, [0.4, 0.3, 0.2, 0.1])]
                        mods[n].weight.add_(_on_directions(F, TRUE, c).float())
            method.save(model, run / method.artifact)
            if name == "svf":
                z = {n: layer.multipliers().detach() for n, layer in svf_layers(model)}
                expected = {n: svf_rates(svds[n].S, z[n]) for n in w0}
            else:
                expected = _dense_rates(w0, method.merged(model), svds)
            out[key] = {"run": run, "expected": expected, "matrices": sorted(w0), "method": name}
        yield out  # the CLI tests run inside this context: they share the SVDs cached here


def _analyse(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "analysis"
    assert main([*args, "--out", str(out)]) == 0
    files = sorted(out.glob("tsd_*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text())


@pytest.mark.parametrize("key", ["lora", "lora_dash", "plora", "svf", "full"])
def test_cli_reads_every_method_through_its_loader(key: str, runs: dict, tmp_path: Path) -> None:
    """The profile of each method's whole update (dash term, merged stages, SVF's z, W* − W) on W_0's basis."""
    r = runs[key]
    doc = _analyse(tmp_path, str(r["run"]))
    assert doc["method"] == r["method"] and sorted(doc["matrices"]) == r["matrices"]
    assert doc["update_form"] == ("dense" if key == "full" else "lowrank")
    for name, e in doc["matrices"].items():
        got = np.array([np.nan if v is None else v for v in e["rates"]])
        want = r["expected"][name].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
        if key == "svf":  # δ_i = |z_i − 1|: 0.5 and 0.3 on KNOWN, 0 elsewhere (up to the fp32 SVD)
            assert e["top"][:2] == KNOWN and np.allclose(e["top_rate"][:2], [0.5, 0.3], atol=1e-5)
        if key == "full":
            assert e["top"][:4] == TRUE and np.allclose(e["top_rate"][:4], [0.4, 0.3, 0.2, 0.1], atol=1e-5)


def test_compare_same_directions_overlap_one_and_all_three_together(runs: dict, tmp_path: Path) -> None:
    """SVF (z ≠ 1 on {0, 3}) vs LoRA U[:, {0,3}] diag(c) V[:, {0,3}]ᵀ at k = 2: overlap 1 on every matrix; with the
    reference (true top-4 = {0, 3, 7, 9}) both runs get recall 2/4 and accuracy 1; a plot of the three profiles."""
    doc = _analyse(tmp_path, str(runs["svf"]["run"]), "--compare", str(runs["lora"]["run"]), "--top", "2",
                   "--reference", str(runs["full"]["run"]), "--plot", "layer.0.intermediate")
    assert doc["compare"]["method"] == "lora" and doc["compare"]["compared_matrices"] == 4
    assert doc["compare"]["mean"] == {"overlap": 1.0, "recall": 0.5, "accuracy": 1.0}
    assert doc["compare"]["base_rel_diff"] == 0.0
    for e in doc["matrices"].values():
        assert e["compare"]["overlap"]["overlap"] == 1.0 and sorted(e["compare"]["top"]) == KNOWN
        assert e["overlap"]["recall"] == 0.5 and e["overlap"]["accuracy"] == 1.0
        assert e["compare"]["overlap_reference"]["recall"] == 0.5
        assert e["true_top"][:4] == TRUE
    assert doc["reference_mean"] == {"recall": 0.5, "accuracy": 1.0}
    pngs = list((tmp_path / "analysis").glob("tsd_compare_*_profile.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000


def test_compare_disjoint_directions_overlap_zero_and_is_never_overwritten(runs: dict, tmp_path: Path) -> None:
    args = [str(runs["svf"]["run"]), "--compare", str(runs["lora_far"]["run"]), "--top", "2"]
    doc = _analyse(tmp_path, *args)
    assert doc["compare"]["mean"]["overlap"] == 0.0
    assert all(e["compare"]["overlap"]["shared"] == 0 for e in doc["matrices"].values())
    with pytest.raises(SystemExit, match="never overwritten"):
        main([*args, "--out", str(tmp_path / "analysis")])


def test_compare_a_lora_dash_run_with_matrix_filter(runs: dict, tmp_path: Path) -> None:
    """``--matrices`` narrows both runs; LoRA-Dash's top-2 include its dash directions' rates (δ / σ on S)."""
    doc = _analyse(tmp_path, str(runs["lora_dash"]["run"]), "--compare", str(runs["svf"]["run"]),
                   "--matrices", "intermediate")
    assert sorted(doc["matrices"]) == [n for n in runs["svf"]["matrices"] if "intermediate" in n]
    assert doc["compare"]["k"] == 8 and 0.0 <= doc["compare"]["mean"]["overlap"] <= 1.0
