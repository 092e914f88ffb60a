#!/usr/bin/env bash
# Issue 12's 2-GPU measurement (run at 8b3f2aa and 88207fa: benchmarks/results/deepspeed_2gpu_*.json): every
# method under DeepSpeed ZeRO-2 and ZeRO-3 through the repo's own entry point on 2 GPUs, against a 1-GPU run of the
# same seed, on a random-init model of LLaMA-3-8B's shapes cut to LAYERS blocks (scripts/gpu/llama_shape_model.py,
# model=llama_shape). A second invocation with other settings takes its own RUNS and TAG, e.g. METHODS=lora BATCH=32
# TAG=_batch32 RUNS=.gpu_ds_runs_b32. Detached on the device, wrap the whole chain in setsid (a call's end kills its
# process group).
#
#   Device call (kind nvidia-h200-x2), after the usual payload (benchmarks/README.md, "Running on the remote GPU
#   machine": scripts/gpu/stage1.sh + bootstrap.sh put hydra/omegaconf/pydantic/... wheels into /tmp/site) with the
#   extra wheels in .gpu_ds/wheels (git-ignored; carry it):
#     .venv/bin/pip wheel --no-deps --no-build-isolation -w .gpu_ds/wheels deepspeed==0.19.8 \
#       hydra-submitit-launcher==1.2.0 submitit==1.5.4     # + ninja, hjson, py-cpuinfo if the image lacks them
#     SPECTUNE_GIT_COMMIT=<commit> bash scripts/gpu/deepspeed_2gpu.sh          (OUT=$OUT: results land there)
#
# Per method (full, lora, lora_dash, plora, svf) and stage (zero2, zero3):
#   1 GPU : python3 -m spectune.train ... train.deepspeed=<stage>           (same DeepSpeed config, world size 1)
#   2 GPUs: torchrun --nproc_per_node 2 -m spectune.train ... train.deepspeed=<stage>
# same seed, same global batch 2 x BATCH (1 GPU: 2 accumulated micro-batches of BATCH; 2 GPUs: one of BATCH each),
# fixed max_steps. Written to $OUT:
#   deepspeed_2gpu_<commit>.json  per cell: losses of both runs, max |Δloss| (tolerance LOSS_TOL); tokens/s from the
#                                 median optimizer step after WARM steps (median_*: the issue's 1 vs 2 GPU ratio,
#                                 target >= 1.8x; a step that switched or unloaded does not move it), the mean over
#                                 those steps (steady_*) and the Trainer's samples/s (start-up included) beside it;
#                                 for zero3 the reload check: the 2-GPU run's saved (gathered) state reloaded on one
#                                 GPU without DeepSpeed re-scores the run's own test items (python -m spectune.evaluate
#                                 --run) to the scores the run computed under ZeRO-3 (max_abs_diff), and, as before,
#                                 the 1- and 2-GPU runs' reloaded logits side by side (max |Δlogit|: training noise too);
#   runs.tgz                      the run folders' small files; log.txt the console.
# The JSON records GPUs (nvidia-smi), world size, commit. Then here: copy it to benchmarks/results/ and commit.
set -euo pipefail
: "${SPECTUNE_GIT_COMMIT:?set SPECTUNE_GIT_COMMIT to the commit of this tree (the copy has no .git)}"
OUT=${OUT:-/tmp/deepspeed_2gpu_out}
SITE=${GPU_SITE:-/tmp/site}
LAYERS=${LAYERS:-4}
STEPS=${STEPS:-30}
TASK=${TASK:-t2/gsm8k}      # prompt + answer 221 tokens on average (SmolLM2's tokenizer), 457 at most: more work per step
                             # than ARC-Easy's 118, whose 570 examples also cap BATCH x STEPS
BATCH=${BATCH:-16}           # micro-batch per GPU; the global batch is 2 x BATCH for both runs (1 GPU: 2 micro-batches
                             # accumulated; 2 GPUs: one each), so the losses can match and tokens/s compares equal work
SEQ=${SEQ:-512}
METHODS=${METHODS:-lora lora_dash plora svf full}
STAGES=${STAGES:-zero2 zero3}
LOSS_TOL=${LOSS_TOL:-0.02}   # bf16 and a different reduction order: losses agree to a few 1e-3, not bit for bit
RUNS=${RUNS:-.gpu_ds_runs}   # run folders; a second invocation with other settings (BATCH=32) takes its own RUNS
MODEL=${MODEL:-.gpu_ds_runs/llama_shape_model}  # the random-init model, shared by invocations
TAG=${TAG:-}                 # in the JSON's name: deepspeed_2gpu<TAG>_<commit>.json, e.g. TAG=_batch32
mkdir -p "$OUT" "$RUNS"
exec > >(tee "$OUT/log.txt") 2>&1

export PYTHONPATH=$SITE:$PWD/src HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \
  SPECTUNE_CACHE=${SPECTUNE_CACHE:-/tmp/spectune_cache} PYTHONUNBUFFERED=1 SPECTUNE_GIT_DIRTY=0
if [[ -d .gpu_ds/wheels ]] && ! python3 -c "import deepspeed" 2>/dev/null; then
  python3 -m pip install --target "$SITE" --no-deps --no-index .gpu_ds/wheels/*.whl
fi
python3 -c "import deepspeed, hydra, submitit; print('deepspeed', deepspeed.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpus.csv"
[[ $(nvidia-smi -L | wc -l) -ge 2 ]] || { echo "needs 2 GPUs" >&2; exit 1; }

[[ -f $MODEL/llama_shape.json ]] || python3 scripts/gpu/llama_shape_model.py --out "$MODEL" --layers "$LAYERS"

# What every run shares: the model, a real task (TASK, embedded carve-out, in the GPU payload), bf16, fixed steps, no merged
# export, checkpoints off (save_steps > max_steps), per-step losses logged.
COMMON=(model=llama_shape "model.name_or_path=$MODEL" "task=$TASK" task.n_valid=0 task.n_train=$((2 * BATCH * STEPS))
  task.n_test=16 train.max_steps=$STEPS train.max_length=$SEQ train.precision=bf16 train.logging_steps=1
  train.save_steps=100000 export_merged=false eval.batch_size=8 logger=disabled seed=0 "runs_root=$RUNS"
  train.count_tokens=true)
method_args() {
  case $1 in
    svf) echo "method=svf method.targets=mlp" ;;
    plora) echo "method=plora method.unload_every=10" ;;
    lora_dash) echo "method=lora_dash method.t=10" ;;
    *) echo "method=$1" ;;
  esac
}

status=0
T_START=$(date +%s)
DEADLINE=${DEADLINE:-0}     # > 0: launch no new pair of runs after DEADLINE s (the summary below still runs)
for method in $METHODS; do    # method by method (both stages each): a DEADLINE drops whole methods, the last first
  for stage in $STAGES; do
    if (( DEADLINE > 0 && $(date +%s) - T_START > DEADLINE )); then
      echo "=== $method $stage: skipped (past DEADLINE=${DEADLINE}s)"; status=1; continue
    fi
    # shellcheck disable=SC2046
    args=("${COMMON[@]}" $(method_args "$method") train.deepspeed=$stage)
    echo "=== $method $stage: 1 GPU"
    CUDA_VISIBLE_DEVICES=0 torchrun --standalone --nproc_per_node 1 -m spectune.train "${args[@]}" \
      experiment_name=ds_1gpu_$stage train.batch_size=$BATCH train.grad_accum=2 || status=1
    echo "=== $method $stage: 2 GPUs"
    torchrun --standalone --nproc_per_node 2 -m spectune.train "${args[@]}" \
      experiment_name=ds_2gpu_$stage train.batch_size=$BATCH train.grad_accum=1 || status=1
  done
done

export BATCH SEQ STEPS LAYERS TASK RUNS MODEL TAG WARM=${WARM:-5}
python3 - "$OUT" "$SPECTUNE_GIT_COMMIT" "$LOSS_TOL" <<'EOF'
"""Compare 1- and 2-GPU runs: losses, tokens/s, memory; ZeRO-3: reload the saved artefacts and compare logits."""
import json, os, subprocess, sys
from pathlib import Path

import torch

out, commit, tol = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
root = Path(os.environ["RUNS"])


def events(run, kind):
    path = run / "metrics.jsonl"
    return [e for e in map(json.loads, path.read_text().splitlines()) if e.get("event") == kind] if path.exists() else []


def logits(run):
    """Reload the run's saved artefacts the way evaluation does and score a fixed batch (one GPU)."""
    from omegaconf import OmegaConf
    from spectune.methods import build_method
    from spectune.config import method_kwargs
    from spectune.training.artifacts import load_trained

    cfg = OmegaConf.create(json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text()))))
    method = build_method(cfg.method.name, **method_kwargs(cfg))
    model, tok, _ = load_trained(cfg, run, method)
    model = model.to("cuda").eval()
    batch = tok(["The capital of France is", "Water boils at"], return_tensors="pt", padding=True).to("cuda")
    with torch.no_grad():
        return model(**batch).logits.float().cpu()


cells = []
for one in sorted((p for p in root.glob("ds_1gpu_*/*/*/*/seed0")), key=str):
    rel = one.relative_to(root).parts  # ds_1gpu_<stage>/<model>/<method>/<task>/seed0
    stage = rel[0].removeprefix("ds_1gpu_")
    two = root / f"ds_2gpu_{stage}" / Path(*rel[1:])
    cell = {"stage": stage, "method": rel[2], "one_gpu": str(one), "two_gpu": str(two)}
    s1, s2 = (json.loads((r / "summary.json").read_text()) if (r / "summary.json").exists() else {} for r in (one, two))
    cell["status"] = [s1.get("status"), s2.get("status")]
    l1 = [e["loss"] for e in events(one, "train") if "loss" in e]
    l2 = [e["loss"] for e in events(two, "train") if "loss" in e]
    cell["losses_1gpu"], cell["losses_2gpu"] = l1, l2
    n = min(len(l1), len(l2))
    cell["max_abs_loss_diff"] = max((abs(a - b) for a, b in zip(l1[:n], l2[:n])), default=None)
    cell["losses_match"] = cell["max_abs_loss_diff"] is not None and cell["max_abs_loss_diff"] <= tol
    for key, run in (("1gpu", one), ("2gpu", two)):
        end = events(run, "train_end")
        cell[f"train_end_{key}"] = end[-1] if end else None
        cell[f"runtime_s_{key}"] = (json.loads((run / "summary.json").read_text()).get("runtime_s")
                                    if (run / "summary.json").exists() else None)
    t1 = (cell["train_end_1gpu"] or {}).get("train_samples_per_second")
    t2 = (cell["train_end_2gpu"] or {}).get("train_samples_per_second")
    cell["speedup_2_vs_1"] = (t2 / t1) if t1 and t2 else None  # the Trainer's, start-up included
    # Steady state: the per-step train events' clock after WARM steps (start-up, allocation, first-step costs out).
    warm = int(os.environ.get("WARM", "5"))
    for key, run in (("1gpu", one), ("2gpu", two)):
        # (step, time, real tokens so far): train.count_tokens logs the non-padding tokens of both ranks' batches
        rows = [(e["step"], e["time"], e.get("num_input_tokens_seen")) for e in events(run, "train")
                if "loss" in e and "time" in e]
        steady = [r for r in rows if r[0] > warm]
        if len(steady) < 2 or steady[-1][1] <= steady[0][1]:
            continue
        steps, seconds = steady[-1][0] - steady[0][0], steady[-1][1] - steady[0][1]
        counted = steady[0][2] is not None and steady[-1][2] is not None
        tokens_per_step = (steady[-1][2] - steady[0][2]) / steps if counted else None
        cell[f"tokens_per_step_{key}"] = tokens_per_step  # real (non-padding) tokens of one global batch, on average
        cell[f"steady_step_s_{key}"] = seconds / steps
        cell[f"steady_tokens_per_s_{key}"] = tokens_per_step / (seconds / steps) if counted else None
        # Median step after WARM: a step that also switched (LoRA-Dash's SVDs) or unloaded (PLoRA) does not move it.
        gaps = [(t2 - t1) / (s2 - s1) for (s1, t1, _), (s2, t2, _) in zip(steady, steady[1:]) if s2 > s1 and t2 > t1]
        if gaps:
            cell[f"median_step_s_{key}"] = sorted(gaps)[len(gaps) // 2]
            cell[f"median_tokens_per_s_{key}"] = (tokens_per_step / cell[f"median_step_s_{key}"]
                                                  if counted else None)
    a, b = cell.get("steady_tokens_per_s_1gpu"), cell.get("steady_tokens_per_s_2gpu")
    cell["steady_speedup_2_vs_1"] = (b / a) if a and b else None
    a, b = cell.get("median_tokens_per_s_1gpu"), cell.get("median_tokens_per_s_2gpu")
    cell["median_speedup_2_vs_1"] = (b / a) if a and b else None  # the issue's tokens/s ratio (target >= 1.8)
    if stage == "zero3" and cell["status"] == ["finished", "finished"]:
        try:
            a, b = logits(one), logits(two)
            cell["zero3_reload_max_abs_logit_diff"] = float((a - b).abs().max())
            cell["zero3_saved_tensors_real"] = bool(torch.isfinite(b).all()) and float(b.abs().max()) > 0
        except Exception as err:  # recorded, not fatal: the other cells still count
            cell["zero3_reload_error"] = f"{type(err).__name__}: {err}"
        # The reload check proper: the 2-GPU ZeRO-3 run's saved (gathered) state, loaded on one GPU without
        # DeepSpeed, re-scores the run's own test items (`python -m spectune.evaluate --run`) and must give the
        # scores the run computed in place under ZeRO-3 (eval_results.json); max_abs_diff over its metrics.
        rescored = out / f"rescored_{cell['method']}.json"
        proc = subprocess.run([sys.executable, "-m", "spectune.evaluate", "--run", str(two), "--out", str(rescored)],
                              capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
        if proc.returncode == 0 and rescored.exists():
            res = json.loads(rescored.read_text())
            cell["zero3_self_reload_max_abs_diff"] = res.get("max_abs_diff")
            cell["zero3_self_reload_metrics"] = res.get("metrics")
            rescored.unlink()  # recorded in the cell; $OUT keeps few files
        else:
            cell["zero3_self_reload_error"] = (proc.stderr or proc.stdout)[-2000:]
    cells.append(cell)

gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.strip().splitlines()
result = {"commit": commit, "gpus": gpus, "world_sizes": [1, 2], "loss_tolerance": tol,
          "model": json.loads((Path(os.environ["MODEL"]) / "llama_shape.json").read_text()),
          "task": os.environ["TASK"], "steps": int(os.environ["STEPS"]), "batch_per_gpu": int(os.environ["BATCH"]),
          "global_batch": 2 * int(os.environ["BATCH"]), "max_length": int(os.environ["SEQ"]),
          "command": "bash scripts/gpu/deepspeed_2gpu.sh", "cells": cells}
path = out / f"deepspeed_2gpu{os.environ['TAG']}_{commit[:7]}.json"
path.write_text(json.dumps(result, indent=1))
for c in cells:
    print(f"{c['stage']:<6} {c['method']:<22} status {c['status']} max|Δloss| {c['max_abs_loss_diff']} "
          f"speedup {c['speedup_2_vs_1']} steady {c.get('steady_speedup_2_vs_1')} median {c.get('median_speedup_2_vs_1')} "
          f"reload: self {c.get('zero3_self_reload_max_abs_diff')}, 1 vs 2 GPUs Δlogit {c.get('zero3_reload_max_abs_logit_diff')}")
print(path)
EOF
find "$RUNS" \( -name summary.json -o -name config.yaml -o -name metrics.jsonl -o -name environment.json \
  -o -name method_record.json -o -name 'method_record.rank*.json' -o -name eval_results.json \) \
  | tar czf "$OUT/runs$TAG.tgz" -T -
ls -la "$OUT"
exit $status
