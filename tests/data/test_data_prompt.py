"""LLM-Adapters' prompt template, pinned byte for byte (indentation quirk and trailing spaces included).

Transcribed from AGI-Edgerunners/LLM-Adapters:
- training: finetune.py, generate_prompt(data_point), commit 91770aba93bbbde16f3e16d1bf395a59706fa390
  (identical in NVlabs/DoRA commonsense_reasoning/finetune.py, commit bd3ed6f91bcfb1a1725089b6ba0325ab79404de0);
- evaluation: commonsense_evaluate.py (stored as commomsense_evaluate.py), generate_prompt(instruction, input),
  commit e0efdc0e8bb43875201e24528d3ee0fe2595876d (identical in NVlabs/DoRA
  commonsense_reasoning/commonsense_evaluate.py, commit 7393fa6c76a7bf74407a75c2370f30b4d78f3cb1).
The f-strings there are indented, so every line after the first starts with 16 spaces. The literals below spell
the bytes out with explicit "\n"; do not "clean them up": the test exists to stop exactly that.
"""

from __future__ import annotations

import pytest

from spectune.data.llm_adapters import generate_eval_prompt, generate_prompt

INSTR = "Please answer the following question with true or false, question: is it?\n\nAnswer format: true/false"
OUT = "the correct answer is true"

# finetune.py, no input: "request." + 2 spaces; blank line inside = 16 spaces; output right after 16 spaces.
TRAIN_NO_INPUT = (
    b"Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n"
    b"\n"
    b"                ### Instruction:\n"
    b"                Please answer the following question with true or false, question: is it?\n"
    b"\n"
    b"Answer format: true/false\n"
    b"                \n"
    b"                ### Response:\n"
    b"                the correct answer is true"
)

# finetune.py, with input: "request." + 1 space.
TRAIN_WITH_INPUT = (
    b"Below is an instruction that describes a task, paired with an input that provides further context. "
    b"Write a response that appropriately completes the request. \n"
    b"\n"
    b"                ### Instruction:\n"
    b"                Do it.\n"
    b"                \n"
    b"                ### Input:\n"
    b"                some input\n"
    b"                \n"
    b"                ### Response:\n"
    b"                done"
)

# commonsense_evaluate.py, no input: "request." + 1 space; blank lines empty; ends with 16 spaces.
EVAL_NO_INPUT = (
    b"Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    b"\n"
    b"                ### Instruction:\n"
    b"                Do it.\n"
    b"\n"
    b"                ### Response:\n"
    b"                "
)

# commonsense_evaluate.py, with input: no space after "request.".
EVAL_WITH_INPUT = (
    b"Below is an instruction that describes a task, paired with an input that provides further context. "
    b"Write a response that appropriately completes the request.\n"
    b"\n"
    b"                ### Instruction:\n"
    b"                Do it.\n"
    b"\n"
    b"                ### Input:\n"
    b"                some input\n"
    b"\n"
    b"                ### Response:\n"
    b"                "
)


def test_train_prompt_bytes() -> None:
    assert generate_prompt(INSTR, None, OUT).encode() == TRAIN_NO_INPUT
    assert generate_prompt(INSTR, "", OUT).encode() == TRAIN_NO_INPUT  # "" is falsy there too
    assert generate_prompt("Do it.", "some input", "done").encode() == TRAIN_WITH_INPUT


def test_eval_prompt_bytes() -> None:
    assert generate_prompt("Do it.", style="eval").encode() == EVAL_NO_INPUT
    assert generate_eval_prompt("Do it.").encode() == EVAL_NO_INPUT
    assert generate_eval_prompt("Do it.", "some input").encode() == EVAL_WITH_INPUT


def test_whitespace_counts_spelled_out() -> None:
    sp16 = b" " * 16
    lines = generate_prompt("X", None, "Y").encode().split(b"\n")
    assert lines == [
        b"Below is an instruction that describes a task. Write a response that appropriately completes the request."
        + b" " * 2,
        b"",
        sp16 + b"### Instruction:",
        sp16 + b"X",
        sp16,
        sp16 + b"### Response:",
        sp16 + b"Y",
    ]
    eval_lines = generate_eval_prompt("X").encode().split(b"\n")
    assert eval_lines[0].endswith(b"request. ") and not eval_lines[0].endswith(b"request.  ")
    assert eval_lines[4] == b"" and eval_lines[-1] == sp16


def test_train_user_prompt_is_prefix_of_full_prompt() -> None:
    # finetune.py masks generate_prompt({**data_point, "output": ""}) when train_on_inputs=False.
    user = generate_prompt(INSTR, None)
    assert generate_prompt(INSTR, None, OUT) == user + OUT
    assert user.endswith("### Response:\n" + " " * 16)
    assert user != generate_eval_prompt(INSTR)  # LLM-Adapters' own train/eval whitespace mismatch, kept


def test_eval_rejects_output_and_unknown_style() -> None:
    with pytest.raises(ValueError, match="style='train'"):
        generate_prompt("X", None, "Y", style="eval")
    with pytest.raises(ValueError, match="style"):
        generate_prompt("X", style="test")  # type: ignore[arg-type]
