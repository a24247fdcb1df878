# Text-to-Image from Scratch: `make setup`, `make demo`, `make test`, `make lab`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Learners get ranges (pyproject.toml); here we pin the builds that the course machines hold locally.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test smoke-full gpu-check full lab clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# The main job: train the text-prompted CVAE in quick mode, draw digits for a few prompts, show where they are.
demo: setup
	COURSE_QUICK=1 $(PY) -m helpers train text-cvae --gif outputs/demo/text_cvae_training.gif
	for prompt in "Print number 5" "Can you show me what seven looks like?" "I want to draw a zero" "Generate digit 3"; do \
		COURSE_QUICK=1 $(PY) -m helpers generate "$$prompt" --n 8 --out outputs/demo || exit 1; \
	done
	COURSE_QUICK=1 $(PY) -m helpers evaluate --model text-cvae
	@echo "demo done: training GIF outputs/demo/text_cvae_training.gif, generated digits in outputs/demo/"

# Unit tests, then every notebook executed top to bottom in quick mode.
test: setup
	COURSE_QUICK=1 $(PY) -m pytest tests
	COURSE_QUICK=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

# Every notebook in full mode on generated stand-ins of the downloads (torchvision's MNIST / CIFAR-10 / CelebA,
# the CelebA parquet mirror, zoheb/sketch-scene), each training run cut to a few steps: checks full mode's code
# paths, not its results (tests/smoke_full.py; NOTEBOOKS="08" picks some).
smoke-full: setup
	$(PY) tests/smoke_full.py $(NOTEBOOKS)

# On a GPU machine: every model's full recipe for 300 optimizer steps with AMP: images/s, peak GPU memory and the
# projected full-recipe time, on stand-in data (no download needed); exits non-zero if any model fails.
gpu-check: setup
	$(PY) -m benchmarks.gpu_check $(if $(STEPS),--steps $(STEPS))

# Every notebook in full mode, headless and in order (resumable: finished notebooks are skipped unless FORCE=1).
# NOTEBOOKS="01 02" picks some; executed copies and timings.json go to outputs/executed/full/.
full: setup
	$(PY) scripts/run_notebooks.py $(if $(FORCE),--force) $(NOTEBOOKS)

lab: setup
	$(PY) -m pip install --quiet -e ".[lab]"
	$(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf runs outputs data/cache
