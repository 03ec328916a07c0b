# medcap: `make demo` and `make test` set up .venv when needed, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= gen,app,serve,eval,tb,dist,dicom,dev

.PHONY: setup browser orthanc demo test lint bench gpu-check clean

setup: $(STAMP)

# Reinstalls only when pyproject.toml changes, so a set-up clone starts in seconds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medcap demo --out demo-out

# The app's end-to-end test drives Debian's Chromium; install it once where we may.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "note: chromium not installed; the browser test will be skipped"

# The DICOMweb tests run against a real Orthanc with its DICOMweb plugin; installed like Chromium.
orthanc:
	@command -v Orthanc >/dev/null && ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; } || \
	  echo "note: orthanc not installed; the DICOMweb tests will be skipped"

# The default suite runs on the CPU everywhere; GPU tests run with `make gpu-check`.
test: $(STAMP) browser orthanc
	MEDCAP_TEST_CPU_ONLY=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/medcap

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# Every GPU path and GPU benchmark in under 8 minutes, one summary table (CPU smoke runs
# without CUDA). No .venv is made: it uses .venv when there is one, else $(PYTHON); a Python
# given on the command line always wins (make gpu-check PYTHON=python3). Results go to OUT.
GPU_PYTHON = $(if $(filter command line,$(origin PYTHON)),$(PYTHON),$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)))
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) demo-out .pytest_cache .mypy_cache .ruff_cache
