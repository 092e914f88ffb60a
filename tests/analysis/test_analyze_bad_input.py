"""``python -m spectune.analyze`` refuses bad input with one message naming the input and the fix (no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spectune.analyze import main


def _run_folder(root: Path, method: str) -> Path:
    run = root / method
    (run / "adapter").mkdir(parents=True)
    (run / "merged").mkdir()
    cfg = {"method": {"name": method}, "model": {"family": "encoder", "name_or_path": "minilm"},
           "task": {"name": "sst2"}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


@pytest.mark.parametrize(
    ("make_args", "fragment"),
    [
        (lambda t: [str(t / "nowhere")], "does not exist"),
        (lambda t: [str(t / "empty")], "neither a run folder"),
        (lambda t: [str(_run_folder(t, "lora")), "--reference", str(t / "nowhere")], "--reference"),
        (lambda t: [str(_run_folder(t, "lora")), "--reference", str(_run_folder(t, "lora_dash"))],
         "must come from full fine-tuning"),
        (lambda t: [str(_run_folder(t, "lora")), "--reference", str(_run_folder(t, "plora"))],
         "method=plora run"),
    ],
)
def test_bad_input_is_one_message(make_args, fragment: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        main(make_args(tmp_path))
    assert fragment in str(info.value.code)


def test_truncated_adapter_is_named(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, "lora")
    (run / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2, "lora_alpha": 4}')
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    with pytest.raises(SystemExit) as info:
        main([str(run), "--out", str(tmp_path / "out")])
    assert "is not a readable PEFT adapter" in str(info.value.code) and "resume" in str(info.value.code)
