# One command sets up and runs the demo (`make demo`), one sets up and runs the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test lint docs benchmark clean

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

# Lint (ruff, configured in pyproject.toml); .ci/run runs it before the tests.
lint: setup
	$(BIN)/ruff check .

# The manual as a site in site/ (tests/test_docs.py builds it strictly in the default suite).
docs: setup
	$(BIN)/mkdocs build --strict

# The train-step throughput of both frameworks (benchmarks/README.md lists the other studies).
benchmark: setup
	$(BIN)/python benchmarks/throughput.py --models resnet20

clean:
	rm -rf $(VENV) .cache site
