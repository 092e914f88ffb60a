"""spectune: LoRA-Dash, PeriodicLoRA and Transformer²/SVF on the singular directions of pretrained weights."""

__version__ = "0.1.0"
