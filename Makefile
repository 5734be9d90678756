# Routine tasks. Every target installs first when needed (.venv, with constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/pipeline plugins
	$(BIN)/pipeline train experiments/sngan_ring8.yaml -o train.steps=1500 -o train.eval_every=500
	@echo
	@echo "Results: MLflow store sqlite:///mlflow.db, artifacts in ./mlartifacts."
	@echo "Browse them with: $(BIN)/pipeline ui   (then open http://127.0.0.1:5000)"

test: install
	$(BIN)/ruff check pipeline plugins tests benchmarks
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check pipeline plugins tests benchmarks
	$(BIN)/ruff format --check pipeline plugins tests benchmarks

format: install
	$(BIN)/ruff format pipeline plugins tests benchmarks
	$(BIN)/ruff check --fix pipeline plugins tests benchmarks

bench-quick: install
	$(BIN)/python benchmarks/overhead.py --quick

clean:
	rm -rf $(VENV) mlflow.db mlartifacts .pytest_cache .ruff_cache
