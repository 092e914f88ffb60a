"""``python -m spectune.adapt`` as users run it: bad input is one message on stderr and exit status 2 (refused before
any model loads); a real run on SmolLM2 (2 blocks) with experts given as SVF run folders writes its result JSON."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.training.helpers import REPO, cli_env


def adapt(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**cli_env(threads=1), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "spectune.adapt", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def refused(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("task", ["t2/math", "t2/humaneval", "t2/arc_challenge", "t2/gsm8k", "t2/mbpp", "t2/arc_easy"])
def test_the_config_composes_for_every_t2_task_and_names_its_command(task: str) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spectune.adaptation.options import check_adapt, settings_from

    conf = REPO / "conf"
    assert "python -m spectune.adapt" in "".join((conf / "adapt.yaml").read_text().splitlines(keepends=True)[:6])
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("adapt", overrides=[f"task={task}", "experts=[a,b]"])
    opts = check_adapt(OmegaConf.to_container(cfg, resolve=True))
    s = settings_from(opts)
    assert opts.strategy == "prompt" and opts.base_weights == "exact" and not opts.allow_other_base
    c = s.few_shot.cem  # the paper's / official defaults
    assert (c.population, c.elite_ratio, c.iterations, c.low, c.high, c.init_std) == (32, 0.2, 50, 0.0, 1.0, 0.5)
    assert s.few_shot.shots == 10 and s.few_shot.tie_break == "gold" and not s.few_shot.per_matrix


def test_bad_input_is_one_message_and_exit_2(tmp_path: Path) -> None:
    out = f"out_dir={tmp_path / 'out'}"
    assert "experts" in refused(adapt([out]))
    assert "does not exist" in refused(adapt([out, "experts=[/no/such/expert]"]))
    assert "cls_expert" in refused(adapt([out, "strategy=cls_expert", f"experts=[{tmp_path}]"]))
    assert "bogus" in refused(adapt([out, "bogus=1", f"experts=[{tmp_path}]"]))  # Hydra's own refusal
    assert "few_shot.low" in refused(adapt([out, "few_shot.low=2", f"experts=[{tmp_path}]"]))
    assert "not a Transformer² task" in refused(adapt([out, "task=glue/sst2", f"experts=[{tmp_path}]"]))
    assert "strategy" in refused(adapt([out, "strategy=oracle", f"experts=[{tmp_path}]"]))
    not_svf = tmp_path / "lora_run"
    not_svf.mkdir()
    (not_svf / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "lora"}, "task": {"name": "t2_gsm8k"}}))
    err = refused(adapt([out, f"experts=[{not_svf}]", "model.num_layers=2"]))
    assert "method=lora" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "out").rglob("*.json"))


@pytest.fixture(scope="module")
def run_folders(tmp_path_factory) -> list[Path]:
    """Two SVF 'run folders' (config.yaml + adapter/svf_expert.safetensors) of SmolLM2 (2 blocks) on GSM8K and
    ARC-Easy, z set by hand (paper form)."""
    from spectune.methods.svf import SVF, SvfSpec, svf_layers
    from spectune.models import load_model_and_tokenizer
    from spectune.spectral import SVDCache

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("runs")
        base, _ = load_model_and_tokenizer("smollm2", "causal_lm", num_layers=2)
        folders = []
        for i, task in enumerate(["t2_gsm8k", "t2_arc_easy"]):
            run = root / task
            method = SVF(SvfSpec(target_modules=["down_proj"]), svd_cache=SVDCache(root / "svd"))
            model = method.attach(copy.deepcopy(base), "CAUSAL_LM")
            with torch.no_grad():
                for _, layer in svf_layers(model):
                    layer.svf_z.mul_(1.0 + 0.2 * (i + 1))
            method.save(model, run / "adapter")
            (run / "config.yaml").write_text(yaml.safe_dump({"method": {"name": "svf"}, "task": {"name": task}}))
            folders.append(run)
    finally:
        torch.set_num_threads(threads)
    return folders


def test_a_real_run_writes_its_result(run_folders, tmp_path: Path) -> None:
    proc = adapt(["strategy=prompt", f"experts=[{run_folders[0]},{run_folders[1]}]", "model.num_layers=2",
                  "task=t2/arc_challenge", "task.n_test=2", "eval.max_new_tokens=2", "classify.max_new_tokens=2",
                  "eval.bits_per_byte=false", f"out_dir={tmp_path / 'out'}", "seed=3"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = list((tmp_path / "out" / "smollm2" / "t2_arc_challenge" / "prompt").glob("result-seed3-*.json"))
    assert len(files) == 1 and str(files[0]) in proc.stdout
    res = json.loads(files[0].read_text())
    assert res["strategy"] == "prompt" and res["score"]["n"] == 2 and 0 <= res["score"]["exact_match"] <= 1
    assert res["timing"]["first_pass_seconds"] > 0 and res["timing"]["second_pass_seconds"] > 0
    assert res["routing"]["domains"] == {"code": None, "math": 0, "reasoning": 1}  # from the runs' tasks
    assert [e["task"] for e in res["experts"]] == ["t2_gsm8k", "t2_arc_easy"]
    prov = res["provenance"]
    assert prov["seed"] == 3 and prov["expert_paths"] == [str(p) for p in run_folders]
    assert prov["commit"]["commit"] and prov["device"]["used"] == "cpu" and prov["config"]["strategy"] == "prompt"
    assert len(res["deviations_from_official"]) == 5 and len(res["items"]) == 2
    assert not list(files[0].parent.glob(".*.tmp"))  # the temporary file is gone
