# Two commands set everything up on a fresh machine: `make test` and `make run`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test run lint docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The bench extras too: the bench smoke test runs every baseline (tests/acceptance/test_bench_scripts.py);
# the docs extras for `make lint`'s docs build.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench,docs]'
	touch $@

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make run` serves the status page, probes and metrics; `make run WORKER_HTTP_PORT=9000` moves it.
WORKER_HTTP_PORT ?= 8087

# Not with --burst: that process exits once the queue is empty, so its URL would lead nowhere.
run: $(VENV)/.installed-run
	$(if $(filter --burst,$(ARGS)),,@echo "status page, /healthz, /readyz, /metrics: http://$${WORKER_HTTP_HOST:-127.0.0.1}:$(WORKER_HTTP_PORT)/")
	WORKER_HTTP_PORT=$(WORKER_HTTP_PORT) exec $(BIN)/python -m worker run $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.typecheck  # mypy, strict, on the installed layout
	$(BIN)/python -m tests.typecheck --imports  # lint-imports: the layers (pyproject.toml)
	$(BIN)/python -m tools.settings_doc --check  # the generated settings page is current
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # a broken link or a page missing from the nav fails (not --quiet: it hides the warnings strict counts)

# The docs site at http://127.0.0.1:8000/, rebuilt on every edit; the settings page regenerated first.
docs: $(VENV)/.installed-test
	$(BIN)/python -m tools.settings_doc
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(VENV)/.installed-test
	PYTHONPATH=. $(BIN)/python bench/queue_throughput.py

clean:
	rm -rf $(VENV) .data .pytest_cache site
