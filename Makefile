# One command sets up and runs the demo (`make demo`), one sets up and runs the tests (`make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test benchmark clean

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

# The train-step throughput of both frameworks (benchmarks/README.md lists the other studies).
benchmark: setup
	$(BIN)/python benchmarks/throughput.py --models resnet20

clean:
	rm -rf $(VENV) .cache
