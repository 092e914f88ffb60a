"""``python -m spectune.evaluate`` refuses bad input with one message naming the input and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spectune.config import CONF_DIR
from spectune.evaluate import main


def _finished_run(root: Path) -> Path:
    """A run folder as the recipe leaves it, with a truncated adapter file (a kill during a copy, a bad upload)."""
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=["model=minilm", "task=glue/sst2", "method=lora", "method.r=2",
                                           "task.n_test=4"])
    run = root / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(OmegaConf.to_container(cfg, resolve=True)))
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    (run / "adapter" / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query"], "task_type": "SEQ_CLS"}))
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    return run


def test_missing_run_folder(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--run", str(tmp_path / "nowhere")])
    assert "holds no finished run" in str(info.value.code)


def test_run_with_a_plain_adapter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--run", str(tmp_path), "--adapter", str(tmp_path)])
    assert "--adapter goes with --model" in str(info.value.code)


def test_truncated_adapter_is_named_with_the_fix(tmp_path: Path, capsys) -> None:
    run = _finished_run(tmp_path)
    assert main(["--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded onto minilm by method=lora" in err and "resume" in err and "Traceback" not in err


def test_unknown_lm_eval_task_is_refused_before_loading(tmp_path: Path, capsys, monkeypatch) -> None:
    import spectune.evaluation.lm_eval_bridge as bridge

    monkeypatch.setattr(bridge, "run_lm_eval", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["--model", "smollm2", "--tasks", "spectune_arc_easy", "no_such_task_xyz"]) == 2
    err = capsys.readouterr().err
    assert "Unknown lm-eval task(s) ['no_such_task_xyz']" in err and "spectune_arc_easy" in err
