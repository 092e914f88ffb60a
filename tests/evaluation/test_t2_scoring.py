"""Transformer²'s scoring: the official answer checks on hand-written cases, code run only through the sandbox
(a reference passes, a wrong one fails, an infinite loop times out), MATH's sympy step outside this process, the
official prompt strings, the ±1 rewards, and one end-to-end scoring per task with SmolLM2 cut to 2 layers."""

from __future__ import annotations

import math
import random

import pytest

from spectune.data import t2_tasks as T
from spectune.data.records import Record
from spectune.evaluation import execution, t2_math
from spectune.evaluation import t2_scoring as S

# --- GSM8K --------------------------------------------------------------------------------------------------------


def test_gsm8k_number_follows_the_official_regex() -> None:
    assert T.gsm8k_number("So she makes 9 * 2 = $18 every day.\n#### 18") == 18.0
    assert T.gsm8k_number("The answer is 72.") == 72.0
    assert T.gsm8k_number("It costs 3.50 dollars") == 3.5
    assert T.gsm8k_number("about .5 of it") == 0.5
    assert T.gsm8k_number("first 12, then 20 apples") == 20.0
    # the official pattern has no comma and no sign: "1,234" ends in "234", "-3" is 3
    assert T.gsm8k_number("a total of 1,234") == 234.0
    assert T.gsm8k_number("the change is -3") == 3.0
    assert T.gsm8k_number("no digits at all") is None


def test_gsm8k_check_uses_the_same_rule_on_gold_and_completion() -> None:
    rec = T.gsm8k_record(0, "q", "5 + 2120 = <<5+2120=2125>>2125\n#### 2,125")
    assert rec.label == 125 and rec.answer == "125"  # the official gold of a comma answer
    assert S.gsm8k_correct(rec, "The answer is 2,125.").correct
    assert not S.gsm8k_correct(rec, "The answer is 2125.").correct
    rec = T.gsm8k_record(1, "q", "#### 72")
    assert S.gsm8k_correct(rec, "She earns $72.00 in total").correct
    assert S.gsm8k_correct(rec, "72 eggs, wait, no: 72").correct
    assert not S.gsm8k_correct(rec, "72 is wrong, it is 73").correct
    assert not S.gsm8k_correct(rec, "I do not know").correct


# --- ARC ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, letter", [
    ("blah blah, so the answer is (B).", "B"),
    ("Therefore the answer is C because", "C"),
    ("the answer is (A) ... but the answer is (D)", "A"),  # the first "answer is"
    ("Reasoning...\nAnswer: D", "D"),
    ("answer: B and also Answer: C\nlater text", "C"),  # last "answer:" of the first line that has one
    ("The best option is E, not A. It is B", "B"),  # else the last standalone capital A-J
    ("I think so", "I"),  # the official fallback reads a lone "I" as a letter
    ("lowercase only: a b c", None),
])
def test_arc_extraction(text: str, letter: str | None) -> None:
    assert S.arc_extract(text) == letter


def test_arc_no_letter_is_a_seeded_guess() -> None:
    guess4 = "ABCDE"[random.Random(42).randint(0, 3)]
    assert S.arc_correct(None, guess4, 4) and not S.arc_correct(None, "ABCD".replace(guess4, "")[0], 4)
    assert S.arc_correct("B", "B", 4) and not S.arc_correct("C", "B", 4)
    rec = T.arc_record("t2_arc_easy", 0, "Q?", ["w", "x", "y", "z"], 1)
    assert [v.correct for v in S.check_completions([rec] * 2, ["so the answer is (B)", "the answer is (A)"])] == [
        True, False]


# --- MATH ---------------------------------------------------------------------------------------------------------


def test_boxed_extraction_with_nested_braces() -> None:
    assert t2_math.boxed_answer(r"so $x = \boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert t2_math.boxed_answer(r"\boxed{1} then \boxed{\left( 3, \frac{\pi}{2} \right)}") == (
        r"\left( 3, \frac{\pi}{2} \right)")
    assert t2_math.boxed_answer(r"\boxed{{a}{b}}") == "{a}{b}"
    assert t2_math.boxed_answer(r"\fbox{7}") is None  # last_boxed finds it, remove_boxed refuses it
    assert t2_math.boxed_answer(r"\boxed{unclosed") is None
    assert t2_math.boxed_answer("no box") is None
    assert t2_math.extract_math_answer("steps.\nThe answer is: 5.\nMore text") == "5"
    assert t2_math.extract_math_answer(r"The answer is: \frac{3}{4}") == r"\frac{3}{4}"
    assert t2_math.extract_math_answer(r"so \boxed{12}") == "12"


@pytest.mark.parametrize("gold, pred, same", [
    (r"\frac{1}{2}", "1/2", True),
    (r"\dfrac{1}{2}", "0.5", True),
    (r"\frac12", r"\frac{1}{2}", True),
    (r"\tfrac{3}{4}", r"\frac34", True),
    ("10", "10.0", True),
    ("1,000", "1000", True),
    ("50", "0.50", True),  # the official percentage rule (x100, /100)
    ("50", "0.5", False),  # ... but "0.5" is first normalised to \frac{1}{2}, which is no number
    ("(1,2)", "(1, 2)", True),
    ("[2,5)", "[2, 5)", True),
    (r"5^\circ", "5", True),
    (r"10\text{ cm}", "10", True),
    (r"\sqrt2", r"\sqrt{2}", True),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    ("x = 5", "5", True),
    ("3", "4", False),
    (r"\frac{1}{3}", "0.33", False),
    ("x^2", None, False),
    (None, None, True),
])
def test_math_equivalence_without_sympy(gold: str | None, pred: str | None, same: bool) -> None:
    assert t2_math.is_equiv(gold, pred) is same


def test_math_sympy_step_runs_in_the_sandbox(tmp_path, monkeypatch) -> None:
    calls = []
    real = execution.run_program
    monkeypatch.setattr(execution, "run_program", lambda *a, **k: calls.append(1) or real(*a, **k))
    marker = tmp_path / "evaluated_here"
    recs = [T.math_record(i, "p", rf"\boxed{{{g}}}") for i, g in enumerate(["x**2+2*x+1", "x**2+2*x+1", "7", "2"])]
    comps = [r"\boxed{(x+1)**2}", r"\boxed{(x+2)**2}",
             rf"\boxed{{__import__('pathlib').Path('{marker}').touch()}}", r"\boxed{2.0}"]
    verdicts = S.math_verdicts(recs, comps)
    assert [v.correct for v in verdicts] == [True, False, False, True]
    assert len(calls) == 1  # one sandboxed program for the three pairs that reach sympy; "2" vs "2.0" needs none
    assert not marker.exists()  # sympify evaluated the text inside the sandbox, not here


# --- code ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mbpp0() -> Record:
    return T.embedded_pool("t2_mbpp")[0]  # remove_Occ


@pytest.fixture(scope="module")
def humaneval0() -> Record:
    return T.embedded_pool("t2_humaneval")[0]  # has_close_elements


def test_mbpp_and_humaneval_through_run_program(mbpp0: Record, humaneval0: Record, monkeypatch) -> None:
    calls = []
    real = execution.run_program
    monkeypatch.setattr(execution, "run_program", lambda program, **k: calls.append(program) or real(program, **k))
    wrong_mbpp = "\ndef remove_Occ(s, ch):\n    return s\n```\nExplanation."
    loop_mbpp = "\ndef remove_Occ(s, ch):\n    while True:\n        pass\n```"
    wrong_he = "\n    return False\n```"
    loop_he = "\n    while True:\n        pass\n```"
    recs = [mbpp0] * 3 + [humaneval0] * 3
    comps = [T.gold_continuation(mbpp0), wrong_mbpp, loop_mbpp, T.gold_continuation(humaneval0), wrong_he, loop_he]
    verdicts = S.check_completions(recs, comps, code_timeout=3.0, workers=2)
    assert [v.correct for v in verdicts] == [True, False, False, True, False, False]
    assert [v.status for v in verdicts] == ["passed", "failed", "timeout", "passed", "failed", "timeout"]
    assert len(calls) == 6 and all("assert" in p for p in calls)
    assert S.rewards(recs[:2], comps[:2], code_timeout=5.0) == [1.0, -1.0]


def test_code_programs_and_sanitizer(mbpp0: Record, humaneval0: Record) -> None:
    assert S.code_body("x = 1\n```\nprose") == "x = 1\n" and S.code_body("no fence") == "no fence"
    messy = ("import math\n\n@staticmethod\ndef f(a):\n    return a\n\nprint(f(1))\nassert f(2) == 2\n"
             "if __name__ == '__main__':\n    f(3)\nclass K:\n    pass\n\ndef g(b):\n    return (b +")
    clean = S.sanitize_code(messy)
    assert "print" not in clean and "assert" not in clean and "__main__" not in clean
    assert clean.startswith("import math") and "@staticmethod\ndef f(a):" in clean and "class K:" in clean
    assert "def g" not in clean  # cut off mid-way: the longest prefix of whole lines that parses
    assert S.sanitize_code("def (:") == "def (:"
    program = S.mbpp_program(mbpp0, "\ndef remove_Occ(s, ch):\n    return s\nprint(remove_Occ('a', 'a'))\n```")
    assert "print(" not in program and program.rstrip().endswith('assert remove_Occ("PHP","P") == "H"')
    program = S.humaneval_program(humaneval0, "\n    return True\n```")
    assert program.startswith("from typing import List") and '    """\n\n    return True\n' in program
    assert program.rstrip().endswith("check(has_close_elements)")


# --- prompts, stop strings ----------------------------------------------------------------------------------------


def test_official_strings() -> None:
    assert T.SYSTEM_GSM8K == ("Below is an instruction that describes a task. Write a response that appropriately "
                              "completes the request.\n\n")
    assert T.SYSTEM_ARC == ('The following are multiple choice questions (with answers). Think step by step and then '
                            'finish your answer with "the answer is (X)" where X is the correct letter choice.')
    assert T.SYSTEM_MATH == (r"Solve the question below by reasoning step by step,and put the final answer within "
                             r"\boxed{}.")
    assert T.SYSTEM_CODE == ("You are an exceptionally intelligent coding assistant that  consistently delivers "
                             "accurate and reliable responses to user instructions.")
    assert T.STOP_STRINGS == ("Instruction:", "Instruction", "Response:", "Response")
    assert T.ARC_PREFILL == "Let's think step by step"
    assert {t.max_new_tokens for t in T.T2.values()} == {512, 1024} and T.T2["t2_math"].max_new_tokens == 1024


class _Llama3Like:
    """Renders messages as Llama-3-Instruct's chat template does (bos, headers, trimmed content, <|eot_id|>)."""

    bos_token, bos_token_id = "<|begin_of_text|>", 128000

    def __call__(self, text):
        return {"input_ids": [self.bos_token_id, 42]}  # adds BOS by default, as Llama-3's tokenizer does

    def apply_chat_template(self, messages, chat_template=None, tokenize=False, add_generation_prompt=False):
        text = self.bos_token + "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}"
                                        "<|eot_id|>" for m in messages)
        return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_generation_prompt else "")


def test_prompts_render_as_the_official_code(mbpp0: Record, humaneval0: Record) -> None:
    tok = _Llama3Like()
    arc = T.arc_record("t2_arc_challenge", 0, "Which is hot?", ["ice", "fire", "snow"], 1)
    assert arc.instruction == "Which is hot?\nOptions:\nA. ice\nB. fire\nC. snow\n"
    assert T.build_prompt(arc, tok) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + T.SYSTEM_ARC + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhich is hot?\nOptions:\nA. ice\nB. fire\nC. snow<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nLet's think step by step")
    assert T.sft_pair(arc, tok) == (T.build_prompt(arc, tok), ". The answer is (B).")
    gsm = T.gsm8k_record(0, "How many?", "#### 3")
    assert T.build_prompt(gsm, tok).endswith(
        "Write a response that appropriately completes the request.<|eot_id|><|start_header_id|>user<|end_header_id|>"
        "\n\nHow many?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    # the code tasks use the official CODE_PROMPT text, not the chat template; BOS as vLLM adds it to a text prompt
    assert T.build_prompt(mbpp0, tok) == (
        "<|begin_of_text|>" + T.SYSTEM_CODE + "\n\n@@ Instruction:\nWrite a python function to remove first and "
        "last occurrence of a given character from the string. Your code should satisfy the following assertion:"
        '\n```python\nassert remove_Occ("abcda","a") == "bcd"\n```\n\n@@ Response:```python')
    he = T.build_prompt(humaneval0, tok)
    assert he.startswith("<|begin_of_text|>" + T.SYSTEM_CODE + "\n\n@@ Instruction:\nWrite a solution to the "
                         "following problem:\n```python\nfrom typing import List\n")
    assert he.endswith('True\n    """\n```\n\n@@ Response:```python\nfrom typing import List\n\n\n'
                       'def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    """ Check if in '
                       'given list of numbers, are any two numbers closer to each other than\n    given threshold.\n'
                       '    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    >>> has_close_elements([1.0, '
                       '2.8, 3.0, 4.0, 5.0, 2.0], 0.3)\n    True\n    """')


def test_cut_at_stop() -> None:
    assert S.cut_at_stop("def f():\n    pass\n@@ Instruction:\nmore") == "def f():\n    pass\n@@ "
    assert S.cut_at_stop("x Response y Instruction z") == "x "
    assert S.cut_at_stop("  leading space kept") == "  leading space kept"


# --- end to end ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", T.T2_TASKS)
def test_score_two_items_end_to_end(smollm2_cut, task: str) -> None:
    from spectune.data.tasks import load_task
    from spectune.evaluation.suite import evaluate_splits

    model, tok = smollm2_cut
    splits = load_task(f"t2/{task[3:]}", n_train=1, n_valid=1, n_test=2, seed=0)
    out = evaluate_splits(model, tok, splits, ["likelihood", "generation"], batch_size=2, max_new_tokens=8)
    res = out[task]
    assert res["n"] == 2 and 0.0 <= res["exact_match"] <= 1.0 and res["max_new_tokens"] == 8
    assert math.isfinite(res["bits_per_byte"]) and res["bits_per_byte"] > 0 and math.isfinite(res["nll_per_token"])
    assert out["primary"] == {"metric": "exact_match", "value": res["exact_match"], "tasks": [task]}
    if T.T2[task].checker == "arc":
        assert 0.0 <= res["likelihood_accuracy"] <= 1.0
    if T.T2[task].checker in ("mbpp", "humaneval"):
        assert res["pass@1"] == res["exact_match"]
    if task == "t2_gsm8k":
        bpb_only = evaluate_splits(model, tok, splits, ["likelihood"], batch_size=2)
        assert bpb_only[task]["bits_per_byte"] == pytest.approx(res["bits_per_byte"])
        assert "exact_match" not in bpb_only[task] and bpb_only["primary"]["metric"] == "bits_per_byte"
