# Routine tasks. Every target installs first when needed (.venv, with constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Material prints a banner about its end of life (May 2027) on every build; the variable hides it.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: install demo test docs lint format bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,docs,postgres,redis]"
	touch $(STAMP)

demo: install
	$(BIN)/pipeline plugins
	$(BIN)/pipeline tune experiments/wgan_gp_grid25.yaml --study-name demo --n-trials 6 --seed 0 \
		-o train.steps=300 -o train.eval_every=100 -o model.g_width=128 -o model.d_width=128 \
		-o "tune.objective={metric: w1}"
	$(BIN)/pipeline best demo
	@echo
	@echo "Results: MLflow runs in sqlite:///mlflow.db (artifacts in ./mlartifacts),"
	@echo "the Optuna study in ./optuna.journal. Run the same command again to add trials."
	@echo "Browse them with: $(BIN)/pipeline ui wgan_gp_grid25"

test: install
	$(BIN)/ruff check pipeline plugins tests benchmarks
	$(MKDOCS) build --strict --quiet
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# The site (mkdocs.yml) into site/; --strict: a broken link or anchor is an error.
docs: install
	$(MKDOCS) build --strict

lint: install
	$(BIN)/ruff check pipeline plugins tests benchmarks
	$(BIN)/ruff format --check pipeline plugins tests benchmarks

format: install
	$(BIN)/ruff format pipeline plugins tests benchmarks
	$(BIN)/ruff check --fix pipeline plugins tests benchmarks

bench-quick: install
	$(BIN)/python benchmarks/overhead.py --quick

clean:
	rm -rf $(VENV) site mlflow.db mlflow.db.*.lock mlartifacts optuna.journal* .pytest_cache .ruff_cache .grimp_cache .import_linter_cache
