# Two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first: it is the CPU wheel on this machine's disk, and a plain `torch`
# requirement resolved before it would download a CUDA build of several GB.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# Ray is optional (groklab[ray]); the sweep tests use it when it installs, else skip with a reason.
	$(BIN)/pip install -q 'ray>=2.9' || echo "note: ray could not be installed; the Ray executor test will be skipped"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/groklab demo

# The report tests drive a headless Chromium: scripts/ensure_chromium.sh installs Debian's package
# when it is missing (root + apt-get), and the browser tests skip with a reason where it cannot.
test: $(STAMP)
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/groklab bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
