"""Model resolution (embedded or hub) and loading for causal LMs and sequence classifiers."""

from spectune.models.hub import ModelUnavailableError, resolve_model_path
from spectune.models.loading import load_model_and_tokenizer, truncate_layers

__all__ = ["ModelUnavailableError", "load_model_and_tokenizer", "resolve_model_path", "truncate_layers"]
