# Two commands for everyone: `make run` and `make test`. The rest is for maintainers.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench bench-faults translations screenshots clean

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

tests/email_clients/node_modules: tests/email_clients/package-lock.json
	npm ci --prefix tests/email_clients --no-audit --no-fund

install: $(STAMP) tests/email_clients/node_modules

## Upgrade the database, load the sample bulletin, start web + worker + SMTP catcher.
run: install
	$(BIN)/bulletin dev

## The whole test suite (TEST_DATABASE_URL=postgresql://... to run it on PostgreSQL).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Extract new strings into the English catalog and compile it (edit the .po in between).
CATALOG := webapp/translations
translations: install
	$(BIN)/pybabel extract -F $(CATALOG)/babel.cfg -k _ -k lazy_gettext --no-location \
		--sort-output --omit-header -o $(CATALOG)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOG)/messages.pot -d $(CATALOG) -l en --no-fuzzy-matching
	$(BIN)/pybabel compile -d $(CATALOG)

## The README's screenshots, taken by the browser tests.
screenshots: install
	SCREENSHOTS_DIR=webapp/static/screenshots $(BIN)/python -m pytest -q tests/test_browser_newsroom.py \
		tests/test_browser_readership.py

bench: install
	@for script in bench/render.py bench/send.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

## Exactly once under SIGKILL and stalls: 10 fault runs (about 30 minutes on 2 cores).
bench-faults: install
	$(BIN)/python bench/faults.py

clean:
	rm -rf $(VENV) instance/maildir .pytest_cache
