"""Every cell of every sweep grid in conf/sweep composes and validates (Hydra compose API only: no model loading).

Also pins the grids the tables promise: the cells `make reproduce-*` ran before the grids moved into conf/ (apart
from PeriodicLoRA's momentum, now m = 0.9, and LoRA-Dash's t = 1 ablation point, dropped), LoRA and LoRA-Dash at
the same ranks wherever a table pairs them, and the Makefile / GPU script naming no grid values.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from experiments import grids
from spectune.config import validate

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE_EXPERIMENTS = ("glue_ft_vs_lora", "table1_commonsense_smoke", "table1_commonsense_paper", "table2_glue_smoke",
                     "table2_glue_paper", "plora_smoke", "plora_paper", "dash_ablation_smoke", "tsd_tracking_smoke",
                     "t2_table1_smoke", "t2_table1_paper", "t2_table2_smoke", "t2_table2_paper",
                     "t2_svf_analysis_smoke", "table1_commonsense_gpu", "table2_glue_gpu", "plora_gpu",
                     "dash_ablation_gpu", "t2_table1_gpu", "t2_table2_gpu")
T2_SEEN = ("t2_gsm8k", "t2_mbpp", "t2_arc_easy")
GLUE3 = ("sst2", "rte", "mrpc")
GLUE8 = ("mnli", "sst2", "cola", "qqp", "qnli", "rte", "mrpc", "stsb")


def _cell_key(cfg) -> tuple:
    """What a cell is: model, task, method and the method settings a table distinguishes (None if absent)."""
    m = cfg.method
    return (cfg.model.name, cfg.task.name, m.name, m.get("r"), m.get("alpha"), m.get("t"), m.get("s"),
            m.get("select"), m.get("momentum"), m.get("unload_every"), cfg.run_tag, cfg.analysis.tsd_reference,
            cfg.export_merged)


def _expected() -> dict[str, Counter]:
    """The cells of each experiment: the Makefile's sweeps before the move (with the two announced changes)."""
    def cell(model, task, method, r=None, *, alpha=None, t=None, s=None, select=None, momentum=None, unload=None,
             tag="", ref=None, merged=False):
        defaults = {"lora_dash": (100, 8, "rate"), "plora": (None, None, None)}.get(method, (None, None, None))
        t = t if t is not None else defaults[0]
        s = s if s is not None else defaults[1]
        select = select if select is not None else defaults[2]
        if method == "plora":
            momentum = 0.0 if momentum is None else momentum
        if method not in ("full", "svf"):
            r = 8 if r is None else r
            alpha = 2 * r if alpha is None else alpha
        return (model, task, method, r, alpha, t, s, select, momentum, unload, tag, ref, merged)

    out: dict[str, list] = {}
    out["glue_ft_vs_lora"] = [cell("minilm", t, m) for m in ("full", "lora") for t in GLUE3]
    t1 = [cell("smollm2", "commonsense", "full")]
    t1 += [cell("smollm2", "commonsense", "lora", r) for r in (4, 8, 16)]
    t1 += [cell("smollm2", "commonsense", "lora_dash", r, t=4) for r in (4, 8, 16)]
    out["table1_commonsense_smoke"] = t1
    # GPU scale (issue 10): the smoke cells, LoRA-Dash at the paper's t = 100 (commonsense) / t = 30 (GLUE).
    out["table1_commonsense_gpu"] = [c if c[2] != "lora_dash" else c[:5] + (100,) + c[6:] for c in t1]
    t1p = [cell(m, "commonsense", "full") for m in ("llama_7b", "llama2_7b", "llama3_8b")]
    t1p += [cell("llama_7b", "commonsense", m, r) for m in ("lora", "lora_dash") for r in (4, 8, 16, 32, 64)]
    t1p += [cell(mod, "commonsense", m, r) for mod in ("llama2_7b", "llama3_8b") for m in ("lora", "lora_dash")
            for r in (16, 32)]
    out["table1_commonsense_paper"] = t1p
    t2 = [cell("minilm", t, "full") for t in GLUE3]
    t2 += [cell("minilm", t, "lora", r) for t in GLUE3 for r in (2, 8)]
    t2 += [cell("minilm", t, "lora_dash", r, t=8) for t in GLUE3 for r in (2, 8)]
    out["table2_glue_smoke"] = t2
    out["table2_glue_gpu"] = [c if c[2] != "lora_dash" else c[:5] + (30,) + c[6:] for c in t2]
    models = ("deberta_v3_base", "deberta_v3_large")
    t2p = [cell(mod, t, "full") for mod in models for t in GLUE8]
    t2p += [cell(mod, t, m, r) for mod in models for t in GLUE8 for m in ("lora", "lora_dash") for r in (2, 8)]
    out["table2_glue_paper"] = t2p
    for scale, stage, model, alpha in (("smoke", 8, "smollm2", None), ("paper", 200, "llama_7b", 16),
                                       ("gpu", 200, "smollm2", None)):
        task, merged = ("commonsense", True) if scale == "paper" else ("mmlu_gsm8k", False)
        p = [cell(model, task, "full", merged=merged),
             *(cell(model, task, "lora", r, alpha=alpha, merged=merged) for r in (1, 8))]
        p += [cell(model, task, "plora", r, alpha=alpha, momentum=mom, unload=stage, merged=merged) for r in (1, 8)
              for mom in (0.0, 0.9)]
        out[f"plora_{scale}"] = p
    tag = "-t{t}-{select}"
    # one factor at a time around the centre s = 8, select = rate, t = centre (smoke: 8 of 64 steps; gpu: 30 of 480)
    for scale, ts, centre in (("smoke", (4, 8, 16, 32), 8), ("gpu", (15, 30, 60, 120), 30)):
        d = [cell("minilm", "sst2", "lora", 8)]
        d += [cell("minilm", "sst2", "lora_dash", 8, t=t, s=8, select="rate", tag=tag.format(t=t, select="rate"))
              for t in ts]
        d += [cell("minilm", "sst2", "lora_dash", 8, t=centre, s=s, select="rate",
                   tag=tag.format(t=centre, select="rate")) for s in (2, 4, 8, 16, 32)]
        d += [cell("minilm", "sst2", "lora_dash", 8, t=centre, s=8, select=sel, tag=tag.format(t=centre, select=sel))
              for sel in ("rate", "random", "top_sigma", "bottom_sigma")]
        out[f"dash_ablation_{scale}"] = d
    ref = "runs/tsd_tracking/minilm/full/sst2/seed0"
    out["tsd_tracking_smoke"] = [cell("minilm", "sst2", "full", merged=True)] + [
        cell("minilm", "sst2", "lora", r, ref=ref) for r in (8, 16, 32)]
    # Transformer²'s Table 1: LoRA r16 alpha 32 and SVF experts on the three expert tasks; Table 2 trains only the
    # classification expert (SVF, task t2_cls) per model.
    for scale, models in (("smoke", ("smollm2",)), ("gpu", ("smollm2",)),
                          ("paper", ("llama3_8b_instruct", "mistral_7b_instruct"))):
        out[f"t2_table1_{scale}"] = [cell(m, t, "lora", 16, alpha=32) for m in models for t in T2_SEEN]
        out[f"t2_table1_{scale}"] += [cell(m, t, "svf") for m in models for t in T2_SEEN]
        out[f"t2_table2_{scale}"] = [cell(m, "t2_cls", "svf") for m in models]
    out["t2_svf_analysis_smoke"] = [cell("smollm2", "t2_gsm8k", "lora", 16, alpha=32)]
    return {k: Counter(v) for k, v in out.items()}


@pytest.mark.parametrize("scale", ("smoke", "gpu", "paper"))
def test_t2_table1_cells_train_by_reinforce_at_the_papers_settings(scale: str) -> None:
    """Both rows of Transformer²'s Table 1 train by REINFORCE with the paper's clip and KL; SVF at lr 2e-3 in the
    official form on the MLP; LoRA on q, v with dropout 0.05; paper scale: 256 prompts per iteration, 512 tokens;
    GPU scale: the measured H200 setting (t2_rl_arc_easy_gpu: 128 prompts, 64 tokens, reward_norm, fp32)."""
    cfgs = grids.cell_configs(f"t2_table1_{scale}")
    for cfg in cfgs:
        assert cfg.train.objective == "reinforce" and cfg.train.max_grad_norm == 1e-3 and cfg.train.rl.kl_coef == 0
        if cfg.method.name == "svf":
            assert (cfg.train.lr, cfg.method.form, cfg.method.targets) == (2e-3, "official", "mlp")
        else:
            assert (cfg.method.targets, cfg.method.dropout) == ("qv", 0.05)
        if scale == "paper":
            assert (cfg.train.rl.batch_prompts, cfg.eval.max_new_tokens, cfg.task.source) == (256, 512, "hub")
        if scale == "gpu":
            assert (cfg.scale_name, cfg.model.name, cfg.task.source) == ("gpu", "smollm2", "embedded")
            assert (cfg.train.rl.batch_prompts, cfg.eval.max_new_tokens, cfg.train.rl.reward_norm) == (128, 64, True)
            assert (cfg.train.rl.iterations, cfg.train.rl.eval_every, cfg.train.precision) == (10, 5, "fp32")
            assert (cfg.task.n_train, cfg.task.n_valid, cfg.task.n_test) == (None, 100, 200)


def test_t2_gpu_classification_expert_trains_on_its_experts_carve_out() -> None:
    """Table 2's classification expert at GPU scale: Table 1's task sizes (its carve-out leaves the experts' test
    items out only with the same task.n_* and seed) and REINFORCE budget; Table 2's rows share one test size."""
    expert = grids.experiment_config("t2_table1_gpu")  # the SVF grid sets only the method and lr 2e-3
    (cls,) = grids.cell_configs("t2_table2_gpu")
    assert cls.task.name == "t2_cls" and cls.method.name == "svf" and cls.scale_name == "gpu"
    for key in ("n_train", "n_valid", "n_test"):
        assert cls.task[key] == expert.task[key], key
    assert cls.train.rl == expert.train.rl and cls.train.lr == 2e-3
    for key in ("objective", "max_grad_norm", "batch_size", "eval_batch_size", "precision"):
        assert cls.train[key] == expert.train[key], key
    table2 = grids.experiment_config("t2_table2_gpu")
    assert (table2.task.n_train, table2.task.n_valid, table2.task.n_test) == (None, 0, 150)
    assert table2.eval.max_new_tokens == expert.eval.max_new_tokens == 64


def test_every_experiment_with_grids_is_pinned_here() -> None:
    assert grids.experiments_with_grids() == sorted(TABLE_EXPERIMENTS)


@pytest.mark.parametrize("experiment", TABLE_EXPERIMENTS)
def test_every_cell_composes_validates_and_is_the_tables_cell(experiment: str) -> None:
    """Each cell of each grid of ``experiment`` composes (Hydra's compose API, the sweep expanded as ``-m`` does) and
    passes ``spectune.config.validate``; together they are the table's cells, each in a run folder of its own."""
    with grids.hydra_compose():
        jobs = [(grid, job, grids.compose(job)) for grid in grids.load_grids(experiment) for job in grid.cells()]
    assert jobs
    for grid, job, cfg in jobs:
        try:
            validate(cfg)
        except Exception as err:  # pragma: no cover - the message is the point
            pytest.fail(f"{experiment}/{grid.name} cell {job}: {err}")
    got = Counter(_cell_key(cfg) for _, _, cfg in jobs)
    want = _expected()[experiment]
    assert got == want, (got - want, want - got)

    folders = Counter((cfg.model.name, cfg.method.label, cfg.task.name, cfg.run_tag) for _, _, cfg in jobs)
    repeated = {k: n for k, n in folders.items() if n > 1}
    if experiment.startswith("dash_ablation"):  # the centre is one cell of each factor's grid: run once, then skipped
        centre = "-t30-rate" if experiment.endswith("_gpu") else "-t8-rate"
        assert repeated == {("minilm", "dash-r8-s8", "sst2", centre): 3}
    else:
        assert not repeated

    ranks: dict[str, set] = {}  # where a table pairs LoRA and LoRA-Dash, they run at the same ranks
    for _, _, cfg in jobs:
        if cfg.method.name in ("lora", "lora_dash"):
            ranks.setdefault(cfg.method.name, set()).add((cfg.model.name, cfg.task.name, cfg.method.r))
    if len(ranks) == 2 and not experiment.startswith("dash_ablation"):
        assert ranks["lora"] == ranks["lora_dash"]


def test_seeds_from_the_command_line_add_the_seed_axis() -> None:
    (grid,) = [g for g in grids.load_grids("table2_glue_smoke") if g.name == "lora"]
    plain, seeded = grid.cells(), grid.cells(["seed=0,1,2"])
    assert len(seeded) == 3 * len(plain) == 18
    assert Counter(o for job in seeded for o in job if o.startswith("seed=")) == {"seed=0": 6, "seed=1": 6,
                                                                                  "seed=2": 6}
    assert grid.axis("method.r") == ["2", "8"] and grid.axis("task") == ["glue/sst2", "glue/rte", "glue/mrpc"]
    assert grid.base_overrides == ["experiment=table2_glue_smoke", "+sweep=table2_glue_smoke/lora"]


def test_makefile_and_gpu_script_name_only_experiments() -> None:
    """The grid values live in conf/sweep only: no `-m` line of the Makefile or the GPU script lists them."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    script = (REPO_ROOT / "scripts" / "gpu" / "plora_study.sh").read_text()
    for text in (makefile, script):
        assert not re.search(r"method\.(r|t|s|select|momentum|unload_every)=", text)
        assert not re.search(r"\bmethod=(full|lora|lora_dash|plora)\b", text)
    for target in ("table-glue-smoke", "reproduce-table1", "reproduce-table2", "figures", "dash-ablations",
                   "reproduce-plora", "reproduce-t2-table1", "reproduce-t2-table2"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_missing_grid_folder_names_the_fix() -> None:
    with pytest.raises(FileNotFoundError, match="conf/sweep/nonexistent/<grid>.yaml"):
        grids.grid_names("nonexistent")
    assert grids.main(["nonexistent"]) == 2
