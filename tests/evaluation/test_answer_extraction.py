"""The LLM-Adapters answer regex: first label word, exact match with record.answer."""

from __future__ import annotations

import pytest

from spectune.data.records import Record
from spectune.evaluation.answer_extraction import (
    LABEL_WORDS,
    canonical_commonsense_task,
    extract_answer,
    score_responses,
)


def test_first_match_wins():
    assert extract_answer("piqa", "solution2 is wrong, the correct answer is solution1") == "solution2"
    assert extract_answer("boolq", "the correct answer is false. true?") == "false"
    assert extract_answer("hellaswag", "the correct answer is ending4") == "ending4"
    assert extract_answer("winogrande", "option2") == "option2"
    assert extract_answer("ARC-Easy", "the correct answer is answer3") == "answer3"


def test_no_match_is_empty_and_matching_is_case_sensitive():
    assert extract_answer("boolq", "True") == ""
    assert extract_answer("piqa", "Solution1") == ""
    assert extract_answer("social_i_qa", "") == ""


def test_no_word_boundaries_like_the_official_regex():
    assert extract_answer("piqa", "solution12") == "solution1"
    assert extract_answer("boolq", "untrue") == "true"


def test_label_words_per_dataset():
    assert LABEL_WORDS["boolq"] == ("true", "false")
    assert LABEL_WORDS["openbookqa"][-1] == "answer5"
    assert extract_answer("winogrande", "answer1 option1") == "option1"
    assert extract_answer("openbookqa", "answer5") == "answer5"
    assert extract_answer("hellaswag", "ending5 ending2") == "ending2"


@pytest.mark.parametrize(("name", "canonical"), [
    ("ARC-Challenge", "arc_challenge"), ("arc_c", "arc_challenge"), ("arc_e", "arc_easy"),
    ("commonsense/siqa", "social_i_qa"), ("obqa", "openbookqa"), ("PIQA", "piqa"),
])
def test_task_aliases(name, canonical):
    assert canonical_commonsense_task(name) == canonical


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="No LLM-Adapters answer pattern"):
        extract_answer("gsm8k", "42")


def test_score_responses():
    records = [Record(task="piqa", id=str(i), answer=a) for i, a in enumerate(["solution1", "solution2", "solution1"])]
    score = score_responses(records, ["solution1", "the correct answer is solution1", "nothing"])
    assert score.predictions == ["solution1", "solution1", ""]
    assert score.correct == [True, False, False]
    assert score.accuracy == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        score_responses(records, ["solution1"])
