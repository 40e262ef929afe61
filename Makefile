# Set-up and entry points. Every target creates .venv in the checkout and installs the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow weights bench-model bench-serve client-envs venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU wheel of torch 2.13.0 where it is at hand; otherwise pip resolves the range in pyproject.
	$(BIN)/python -m pip install --quiet --only-binary=:all: torch==2.13.0 || true
	$(BIN)/python -m pip install --quiet -e ".[test,train]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m carla_eval.demo

test: $(STAMP) client-envs
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) client-envs
	# exit code 5 = no slow test collected (e.g. a subset checkout); anything else fails
	$(BIN)/python -m pytest -q -m "slow" || [ $$? -eq 5 ]

weights: $(STAMP)
	$(BIN)/python -m training.make_weights

bench-model: $(STAMP)
	$(BIN)/python -m agent.model.benchmark --preset tiny

bench-serve: $(STAMP)
	$(BIN)/python -m agent.benchmark_serve

# Python 3.7 / 3.8 environments of the agent client (.venv-py37, .venv-py38), used by the tests
client-envs:
	.ci/client_envs.sh

clean:
	rm -rf $(VENV) .venv-py37 .venv-py38 .pytest_cache
