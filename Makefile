# Quick start: `make demo` (train -> export -> infer on the built-in digits data) and `make test`.
# Both create .venv when missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlcv-installed

# Demo settings: a narrow FCN8s (same architecture, 1/8 of the channels, BatchNorm in the encoder
# since it starts without ImageNet weights) that trains in about six minutes on 2 CPU cores.
DEMO_MODEL ?= fcn8s
DEMO_WIDTH ?= 0.125
DEMO_EPOCHS ?= 7
DEMO_LR ?= 1e-3
DEMO_RUN ?= runs/demo-$(DEMO_MODEL)
DEMO_ART ?= artifacts/demo-$(DEMO_MODEL)
DEMO_OUT ?= demo-out

.PHONY: install demo test test-slow clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,test]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) benchmarks/demo.py --model $(DEMO_MODEL) --width $(DEMO_WIDTH) --epochs $(DEMO_EPOCHS) --lr $(DEMO_LR) \
		--run $(DEMO_RUN) --artifacts $(DEMO_ART) --out $(DEMO_OUT)

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(DEMO_RUN) $(DEMO_ART) $(DEMO_OUT) build *.egg-info
