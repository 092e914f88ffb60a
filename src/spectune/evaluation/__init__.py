"""Scorers per task family, the LLM-Adapters generation protocol, and the lm-eval bridge.

- :mod:`.glue_metrics`: GLUE metrics (accuracy, F1, Matthews, Pearson/Spearman) with scikit-learn and SciPy;
- :mod:`.classification`: encoder predictions and their GLUE score;
- :mod:`.answer_extraction`: the LLM-Adapters commonsense answer regex and exact match;
- :mod:`.generation`: batched 4-beam generation under that protocol, and its agreement with the batch-1 loop;
- :mod:`.likelihood`: log-likelihood multiple choice (acc, acc_norm), gold NLL per token and bits per byte;
- :mod:`.lm_eval_bridge`: lm-evaluation-harness on users' models with offline task files.

Importing this package loads neither lm-eval nor a model.
"""

from spectune.evaluation.answer_extraction import (
    LABEL_WORDS,
    ExtractionScore,
    answer_pattern,
    canonical_commonsense_task,
    extract_answer,
    score_responses,
)
from spectune.evaluation.classification import evaluate_glue, predict_sequence_classification
from spectune.evaluation.generation import (
    MAX_NEW_TOKENS,
    NUM_BEAMS,
    GenerationEvaluation,
    LoopComparison,
    compare_with_loop,
    default_prompt_fn,
    evaluate_generation,
    generate_responses,
    protocol_generation_config,
    record_prompts,
)
from spectune.evaluation.glue_metrics import GLUE_TASKS, glue_metrics, normalize_glue_task, primary_metric
from spectune.evaluation.likelihood import (
    GoldLikelihood,
    MultipleChoiceResult,
    bits_per_byte_per_item,
    continuation_logprobs,
    encode_pair,
    gold_bits_per_byte,
    score_gold,
    score_multiple_choice,
)
from spectune.evaluation.lm_eval_bridge import (
    local_task_names,
    local_tasks_dir,
    run_lm_eval,
    summarize_results,
    task_manager,
)

__all__ = [
    "GLUE_TASKS",
    "LABEL_WORDS",
    "MAX_NEW_TOKENS",
    "NUM_BEAMS",
    "ExtractionScore",
    "GenerationEvaluation",
    "GoldLikelihood",
    "LoopComparison",
    "MultipleChoiceResult",
    "answer_pattern",
    "bits_per_byte_per_item",
    "canonical_commonsense_task",
    "compare_with_loop",
    "continuation_logprobs",
    "default_prompt_fn",
    "encode_pair",
    "evaluate_generation",
    "evaluate_glue",
    "extract_answer",
    "generate_responses",
    "glue_metrics",
    "gold_bits_per_byte",
    "local_task_names",
    "local_tasks_dir",
    "normalize_glue_task",
    "predict_sequence_classification",
    "primary_metric",
    "protocol_generation_config",
    "record_prompts",
    "run_lm_eval",
    "score_gold",
    "score_multiple_choice",
    "score_responses",
    "summarize_results",
    "task_manager",
]
