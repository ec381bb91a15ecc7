# The two commands: `make bench` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PY := .venv/bin/python
SUBMISSION ?= ecg_hyperprior
DATASET ?= kodak
TARGETS ?= 0.075,0.15,0.3
MODE ?= clic
OBJECTIVE ?= msssim
JOBS ?= 2
BACKEND ?= joblib
PROBE ?= none
SCHEDULER ?=
DEVICE ?= cpu
NO_SANDBOX ?=
SANDBOX_FLAG = $(if $(filter 1 yes true,$(NO_SANDBOX)),--no-sandbox)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup sandbox-tool bench test test-fast lint train report verify list benchmark load profile regress ablation ladder \
	gating gpu-check costs cuda-wheel perceptual-pass

setup: .venv/.installed sandbox-tool $(if $(filter cuda%,$(DEVICE)),cuda-wheel)

# DEVICE=cuda: the installed torch must be a CUDA build that sees a GPU (nothing is downloaded here)
cuda-wheel: .venv/.installed
	$(PY) -m bench.device --check-cuda

.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# submissions run sandboxed with bubblewrap (docs/sandbox.md): Debian's package, installed once
sandbox-tool:
	@command -v bwrap >/dev/null || { echo "installing bubblewrap (the sandbox submissions run in)"; \
	  $(SUDO) apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap; }; } || \
	  { echo "could not install bubblewrap: install it (apt-get install bubblewrap) or run with NO_SANDBOX=1"; exit 1; }

bench: setup  ## benchmark SUBMISSION on DATASET at TARGETS; report in reports/$(DATASET)/
	$(PY) -m bench run --submission $(SUBMISSION) --dataset $(DATASET) --targets $(TARGETS) \
	  --mode $(MODE) --objective $(OBJECTIVE) --jobs $(JOBS) --backend $(BACKEND) --probe $(PROBE) --device $(DEVICE) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(SANDBOX_FLAG)

test: setup  ## the test suite (what CI runs)
	$(PY) -m pytest -q

test-fast: setup  ## the unit tests: no runs' child processes, browsers, clusters or training (under 2 minutes)
	$(PY) -m pytest -q -m "not slow"

lint: setup  ## ruff over the whole tree (ruff.toml)
	$(PY) -m ruff check .

# regress: the CI regression gate (bench/regress.py). UPDATE=1 rewrites reports/baselines/fast/*.json
# deliberately; THRESHOLDS=bd_rate:+1%,msssim:-0.001,psnr:-0.05 overrides limits.
regress: setup  ## re-run the fast profile for every submission and compare with the stored baselines
	$(PY) -m bench regress $(if $(filter 1 yes true,$(UPDATE)),--update-baseline) \
	  $(if $(THRESHOLDS),--thresholds '$(THRESHOLDS)') $(SANDBOX_FLAG)

train: setup  ## train or resume SUBMISSION's recipe (submissions/$(SUBMISSION)/train.toml)
	$(PY) -m bench train --submission $(SUBMISSION) $(if $(RUN),--run $(RUN)) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))

# ablation: B against A model by model on DATASET (both must have been run with `make bench`)
A ?= noise_hyperprior
B ?= sth_hyperprior
ablation: setup  ## native-rate table + BD-rate of B vs A; reports/$(DATASET)/ablation_A_vs_B.*
	$(PY) -m bench ablation $(A) $(B) --dataset $(DATASET)

# ladder: the 3-D context model's ablation, rung by rung (each rung needs `make bench SUBMISSION=<rung>` first)
RUNGS ?= context2d_gaussian context3d_gaussian context3d_gmm_plain context3d_gmm
ladder: setup  ## BD-rates vs the first rung and noise_hyperprior, MACs, seconds; reports/$(DATASET)/ablation_context3d.*
	$(PY) -m bench ladder $(RUNGS) --reference noise_hyperprior --name context3d --dataset $(DATASET)

# gating: the ECG seed's table, gated vs dense variable-rate model at 8 λ (codes through the runs' caches)
gating: setup  ## ECG vs BM: quality drop, MAC reduction, sparsity, unused weights; reports/$(DATASET)/gating_*
	$(PY) -m bench gating ecg_hyperprior bm_hyperprior --dataset $(DATASET)

report: setup  ## rebuild every dataset's page from its stored runs, then its screenshots (Chromium, 1280 and 390 px)
	$(PY) -m bench report
	$(PY) -m bench screenshots

verify: setup  ## decode every published row of DATASET from its files; RERUN=1 re-codes the rows' chosen points instead
	$(PY) -m bench verify --dataset $(DATASET) $(if $(filter 1 yes true,$(RERUN)),--rerun) $(SANDBOX_FLAG)

list: setup
	$(PY) -m bench list

benchmark: setup  ## speed/throughput benchmarks; results written under reports/
	$(PY) benchmarks/train_throughput.py

perceptual-pass: setup  ## the perceptual pass, 1 vs 2 images at a time, on DATASET's published files; reports/load/PERCEPTUAL_PASS_*.md
	$(PY) benchmarks/perceptual_pass.py --dataset $(DATASET)

# profile: BEFORE=<dir of an older checkout> adds its rows first (e.g. git worktree add /tmp/old <commit>)
profile: setup  ## one job per codec kind split into network, coder, file, metrics, measure, harness; reports/load/PROFILE.md
	rm -f reports/load/profile.csv
	$(if $(BEFORE),$(PY) benchmarks/job_profile.py run --label before --code $(BEFORE) &&) $(PY) benchmarks/job_profile.py run --label $(if $(BEFORE),after,current)
	$(PY) benchmarks/job_profile.py render

gpu-check: setup  ## on a GPU machine (<5 min): CUDA tests, JOBS=1/2 runs, verify, decodes, refusal; reports/load/GPU_CHECK.md
	$(PY) benchmarks/gpu_check.py $(SANDBOX_FLAG)

costs: setup  ## what each stored run cost (wall time, jobs coded, estimates), per dataset; reports/load/run_costs.md
	$(PY) benchmarks/run_costs.py

load: setup  ## throughput on full Kodak + CLIC 2025 with JOBS=1 and 2 (LIMIT=N for a quick look); reports/load/
	$(PY) benchmarks/load.py $(if $(LIMIT),--limit $(LIMIT))
