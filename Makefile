# One command sets up and runs the demo (`make demo`), one sets up and runs the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test parity benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[jax,torch,dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/sesemi demo

# The default suite: unit tests and the parity ladder, benchmarks excluded (see pyproject addopts).
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

benchmark: setup
	$(BIN)/python -m pytest -m benchmark -s -q benchmarks

clean:
	rm -rf $(VENV) .cache
