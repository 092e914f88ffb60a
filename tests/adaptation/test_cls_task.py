"""Transformer²'s classification expert as a task of ``spectune.train`` (``task=t2/cls``, family ``t2_cls``).

The data are the expert tasks' train / validation queries only: checked here against the experts' own carve-outs,
loaded independently, and against the unseen tasks Table 2 routes. ``reward_task`` returns the classifier's reward
task (±1 for the right ``\\boxed{domain}``, the official ``tasks/cls.py`` rule). One tiny end-to-end REINFORCE run
(SmolLM2 cut to 2 blocks, one iteration) makes a run folder that ``spectune.adapt strategy=cls_expert`` accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from spectune.adaptation.cls_data import ClassifierRewardTask
from spectune.data.t2_tasks import load_t2
from spectune.data.tasks import load_task

SIZES = {"n_train": 8, "n_valid": 4, "n_test": 8}  # Table 1's smoke carve-out (conf/experiment/t2_table1_smoke.yaml)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_t2_cls_holds_the_experts_train_and_validation_items_only() -> None:
    splits = load_task("t2/cls", seed=0, **SIZES)
    assert splits.spec.family == "t2_cls" and splits.test == [] and len(splits.train) == 24
    assert len(splits.validation) == 12 and splits.meta["domains"] == {"t2_gsm8k": "math", "t2_mbpp": "code",
                                                                        "t2_arc_easy": "reasoning"}
    texts = {r.instruction for r in splits.train + splits.validation}
    for task, domain in splits.meta["domains"].items():
        # The expert's carve-out, loaded on its own: same train / validation items, none of its test items.
        tr, va, te, m = load_t2(task, "embedded", SIZES["n_train"], SIZES["n_valid"], SIZES["n_test"], 0)
        ours = {part: {r.id.split(":", 1)[1] for r in recs if r.id.startswith(task + ":")}
                for part, recs in (("train", splits.train), ("valid", splits.validation))}
        assert ours == {"train": {str(r.id) for r in tr}, "valid": {str(r.id) for r in va}}
        assert splits.meta["excluded_test_indices"][task] == m["test_indices"]
        assert not {str(i) for i in m["test_indices"]} & (ours["train"] | ours["valid"])
        assert not {r.instruction for r in te} & texts
        assert {r.answer for r in splits.train if r.id.startswith(task + ":")} == {domain}
    # Nothing of the unseen tasks the classifier routes in Table 2 (their train and test carve-outs).
    for unseen in ("t2_math", "t2_humaneval", "t2_arc_challenge"):
        tr, _, te, _ = load_t2(unseen, "embedded", 4, 0, 8, 0)
        assert not {r.instruction for r in tr + te} & texts
    # task.domains chooses the expert tasks (null leaves one out) and refuses unseen tasks and unknown domains.
    two = load_task("t2/cls", seed=0, domains={"t2/gsm8k": "math", "t2_mbpp": "code", "t2_arc_easy": None}, **SIZES)
    assert two.meta["domains"] == {"t2_gsm8k": "math", "t2_mbpp": "code"} and len(two.train) == 16
    with pytest.raises(ValueError, match="unseen"):
        load_task("t2_cls", domains={"t2_arc_challenge": "reasoning"}, **SIZES)
    with pytest.raises(ValueError, match="one of"):
        load_task("t2_cls", domains={"t2_gsm8k": "physics"}, **SIZES)
    with pytest.raises(ValueError, match="task=t2/cls"):
        load_task("t2_gsm8k", domains={"t2_gsm8k": "math"}, **SIZES)


def test_cls_task_config_matches_the_experts_and_validates() -> None:
    from hydra import compose, initialize_config_dir

    from spectune.config import CONF_DIR, ConfigError, validate

    cls = yaml.safe_load((CONF_DIR / "task" / "t2" / "cls.yaml").read_text())
    for task in ("gsm8k", "mbpp", "arc_easy"):  # the experts' carve-out, so their test items stay out
        expert = yaml.safe_load((CONF_DIR / "task" / "t2" / f"{task}.yaml").read_text())
        assert all(cls[k] == expert[k] for k in ("n_train", "n_valid", "n_test", "source"))
    base = ["model=smollm2", "method=svf", "task=t2/cls", "train.objective=reinforce"]
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        validate(compose("config", overrides=base))
        with pytest.raises(ConfigError, match="unseen"):
            validate(compose("config", overrides=[*base, "+task.domains.t2_math=math"]))
        with pytest.raises(ConfigError, match="causal LM"):
            validate(compose("config", overrides=["model=minilm", "method=svf", "task=t2/cls"]))
    # Table 2's classifier cell (smoke) is carved and trained as Table 1's experts are (tests/experiments/test_grids.py
    # composes and validates the cell itself).
    grid = yaml.safe_load((CONF_DIR / "sweep" / "t2_table2_smoke" / "cls_expert.yaml").read_text())
    params = grid["hydra"]["sweeper"]["params"]
    t1 = yaml.safe_load((CONF_DIR / "experiment" / "t2_table1_smoke.yaml").read_text())
    assert params["task"] == "t2/cls" and params["method"] == "svf" and params["train.objective"] == "reinforce"
    assert all(params[f"task.{k}"] == t1["task"][k] for k in SIZES)
    assert all(params[f"train.rl.{k}"] == t1["train"]["rl"][k] for k in ("iterations", "batch_prompts", "eval_every"))


def test_reward_task_dispatches_by_task_and_scores_the_boxed_domain() -> None:
    from spectune.training.reinforce import T2RewardTask, reward_task

    task = reward_task("t2/cls", None)
    assert isinstance(task, ClassifierRewardTask) and task.metric == "exact_match"
    assert isinstance(reward_task("t2_gsm8k", None), T2RewardTask)
    with pytest.raises(ValueError, match="no reward function"):
        reward_task("sst2", None)
    records = load_task("t2_cls", domains={"t2_gsm8k": "math", "t2_mbpp": "code"}, n_train=1, n_valid=0,
                        n_test=1).train
    math, code = sorted(records, key=lambda r: r.answer, reverse=True)
    assert (math.answer, code.answer) == ("math", "code")
    hand = [(math, "Classification: \\boxed{math}", 1.0), (code, "\\boxed{code}", 1.0),
            (math, "Classification: \\boxed{code}", -1.0), (code, "\\boxed{Code}", -1.0),  # case-sensitive
            (math, "math", -1.0), (math, "\\boxed{other}", -1.0), (code, "\\boxed{code} or \\boxed{math}", 1.0),
            (math, "\\boxed{code} or \\boxed{math}", -1.0), (math, "", -1.0)]  # the first box decides
    assert task.rewards([r for r, _, _ in hand], [c for _, c, _ in hand]) == [w for _, _, w in hand]


def test_trained_classification_expert_is_accepted_by_adapt(tmp_path: Path) -> None:
    """1 REINFORCE iteration through the recipe on 2 + 2 items (2 domains), then spectune.adapt strategy=cls_expert
    with that run folder as the classifier (and its adapter, given a domain, as the one task expert)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spectune.adapt import run as adapt_run
    from spectune.adaptation.settings import ExpertError
    from spectune.adaptation.sources import check_roles
    from spectune.config import CONF_DIR
    from spectune.training.recipe import train_and_evaluate

    overrides = ["model=smollm2", "model.num_layers=2", "method=svf", "method.target_modules=[down_proj]",
                 "task=t2/cls", "task.n_train=1", "task.n_valid=1", "task.n_test=2", "task.domains.t2_arc_easy=null",
                 "train.objective=reinforce", "train.rl.iterations=1", "train.rl.batch_prompts=2",
                 "train.rl.eval_every=1", "train.rl.max_new_tokens=3", "train.batch_size=2", "train.eval_batch_size=2",
                 "train.lr=2e-2", "export_merged=false", "logger=disabled", "train.num_threads=1",
                 f"runs_root={tmp_path}"]
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=overrides)
    run = tmp_path / "cls_run"
    summary = train_and_evaluate(cfg, run)
    assert summary["status"] == "finished" and summary["task"] == "t2_cls" and summary["train_steps"] == 1
    assert summary["rl"]["n_valid"] == 2 and (run / "adapter" / "svf_expert.safetensors").exists()
    indices = json.loads((run / "data_indices.json").read_text())
    assert indices["family"] == "t2_cls" and indices["domains"] == {"t2_gsm8k": "math", "t2_mbpp": "code"}
    assert indices["test_indices"] == {} and set(indices["excluded_test_indices"]) == {"t2_gsm8k", "t2_mbpp"}
    assert yaml.safe_load((run / "config.yaml").read_text())["task"]["domains"]["t2_gsm8k"] == "math"
    assert json.loads((run / "eval_results.json").read_text())["t2_cls"] == {"n": 0}

    assert check_roles([], str(run)) == {"t2_gsm8k": "math", "t2_mbpp": "code"}
    with pytest.raises(ExpertError, match="not a task expert"):
        check_roles([str(run)], None)
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        adapt_cfg = compose("adapt", overrides=[
            "strategy=cls_expert", f"cls_expert={run}", f"experts=[{run / 'adapter'}]", "domains=[math]",
            "model.num_layers=2", "task=t2/arc_challenge", "task.n_train=1", "task.n_valid=0", "task.n_test=1",
            "eval.max_new_tokens=2", "classify.max_new_tokens=2", "eval.bits_per_byte=false", "device=cpu",
            f"out_dir={tmp_path / 'adapt'}"])
    container = OmegaConf.to_container(adapt_cfg, resolve=True)
    container.pop("hydra", None)
    path, result = adapt_run(container)
    assert path.exists() and result["strategy"] == "cls_expert" and result["score"]["n"] == 1
    assert result["routing"]["classifier"]["task"] == "t2_cls"
    assert result["provenance"]["cls_expert_domains"] == {"t2_gsm8k": "math", "t2_mbpp": "code"}
    # A task expert's run folder is refused as the classifier, by name.
    other = tmp_path / "gsm8k_run"
    (other / "adapter").mkdir(parents=True)
    (other / "adapter" / "svf_expert.safetensors").write_bytes(b"")
    (other / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "svf"}, "task": {"name": "t2_gsm8k"}}))
    with pytest.raises(ExpertError, match="not a classification expert"):
        check_roles([], str(other))
