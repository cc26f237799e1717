# Quick start: `make demo` (train -> export -> infer on the built-in digits data) and `make test`.
# Both create .venv when missing and install the project into it, pinned by constraints.txt
# (the exact versions the suite last passed with). `make test-latest` tries the newest releases.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlcv-installed
CONSTRAINTS ?= constraints.txt
EXTRAS ?= cpu,train,test
LATEST_VENV ?= .venv-latest
# tritonserver for the Triton tests: the nvidia-pytriton wheel ships one (Python backend only, runs
# without a GPU). It pins numpy<2, so it is installed without dependencies into a folder of its own
# where it cannot change the suite's numpy, with numpy<2 beside it for its Python-backend stub
# (dlcv.runtime.triton.local_server looks in <venv>/triton, or $DLCV_TRITON_HOME).
PYTRITON_VERSION ?= 0.7.0
STUB_NUMPY_VERSION ?= 1.26.4
TRITON_STAMP := $(VENV)/triton/.installed-$(PYTRITON_VERSION)-$(STUB_NUMPY_VERSION)
define install_triton
	rm -rf $(2)/pytriton $(2)/stub-numpy
	$(1) -m pip install --quiet --no-deps --target $(2)/pytriton nvidia-pytriton==$(PYTRITON_VERSION)
	$(1) -m pip install --quiet --no-deps --target $(2)/stub-numpy numpy==$(STUB_NUMPY_VERSION)
endef

# Demo settings: a narrow FCN8s (same architecture, 1/8 of the channels, BatchNorm in the encoder
# since it starts without ImageNet weights) that trains in about six minutes on 2 CPU cores.
DEMO_MODEL ?= fcn8s
DEMO_WIDTH ?= 0.125
DEMO_EPOCHS ?= 7
DEMO_LR ?= 1e-3
DEMO_RUN ?= runs/demo-$(DEMO_MODEL)
DEMO_ART ?= artifacts/demo-$(DEMO_MODEL)
DEMO_OUT ?= demo-out

.PHONY: install install-triton demo test test-slow test-latest constraints clean

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip -c $(CONSTRAINTS)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)

$(TRITON_STAMP): $(STAMP)
	$(call install_triton,$(PY),$(VENV)/triton)
	@touch $@

install-triton: $(TRITON_STAMP)

demo: install
	$(PY) benchmarks/studies/demo.py --model $(DEMO_MODEL) --width $(DEMO_WIDTH) --epochs $(DEMO_EPOCHS) --lr $(DEMO_LR) \
		--run $(DEMO_RUN) --artifacts $(DEMO_ART) --out $(DEMO_OUT)

test: install install-triton
	$(PY) -m pytest -q

test-slow: install install-triton
	$(PY) -m pytest -q -m "slow or not slow"

# The newest releases the package's own (loose) ranges admit, in a fresh venv, without the
# constraints: finds upstream drift on purpose. `make constraints` then pins what passed.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LATEST_VENV)/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	$(call install_triton,$(LATEST_VENV)/bin/python,$(LATEST_VENV)/triton)
	$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable > $(LATEST_VENV)/freeze.txt
	$(LATEST_VENV)/bin/python -m pytest -q -p no:cacheprovider

# Write constraints.txt from the venv `make test-latest` built (run that first, and only commit
# the result when its tests passed).
constraints:
	@test -f $(LATEST_VENV)/freeze.txt || { echo "run make test-latest first"; exit 2; }
	{ echo "# Exact versions make demo/test/.ci/run install (Python 3.11, Linux x86-64)."; \
	  echo "# Refresh: make test-latest && make constraints (see README, Tests)."; \
	  grep -v -i -E '^(dlcv|-e )' $(LATEST_VENV)/freeze.txt; } > $(CONSTRAINTS)

clean:
	rm -rf $(DEMO_RUN) $(DEMO_ART) $(DEMO_OUT) build *.egg-info
