# Two commands on a fresh machine: `make demo` and `make test`. Only python3 (3.11+) and make needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format lock bench bench-venv-ft clean browser docs notebooks postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "uv==0.13.9"

# Re-install whenever the lock file changes (uv pip sync: exactly the pinned versions, nothing else).
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/uv pip sync --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/clvml demo

# The HTML reports are opened in Debian's headless chromium by the tests (tests/browser.py, driven by
# Playwright, which never downloads a browser). Installed here when missing and apt-get can (root);
# otherwise those tests skip and say why.
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests of the HTML reports"; \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get install -y --no-install-recommends chromium >/dev/null \
	   || (apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null)) \
	  || echo "chromium could not be installed: the browser tests of the HTML reports will skip"; \
	fi

test: $(STAMP) browser postgres
	$(BIN)/ruff check clvml tests bench tools
	$(BIN)/python -m pytest -n 2 --dist loadscope -q --durations=15

# The documentation site, built offline into site/ (open site/index.html); strict: any warning fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

# Re-execute notebooks/*.ipynb on a fresh kernel and store them with their outputs (commit the result).
notebooks: $(STAMP)
	$(BIN)/python -m tests.nbrun

# tests/test_db_inputs.py starts a real PostgreSQL server: Debian's binaries, installed only when absent
# (as root, with apt-get); without them those tests are skipped with the reason
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
	  echo "note: PostgreSQL could not be installed: tests/test_db_inputs.py will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check clvml tests bench tools

format: $(STAMP)
	$(BIN)/ruff format clvml tests bench

# Re-resolve the pins (needs network). Commit the updated requirements.lock.
lock: | $(BIN)/python
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 -o requirements.lock

bench: $(STAMP)
	$(BIN)/python bench/features.py
	$(BIN)/python bench/btyd.py

clean:
	rm -rf $(VENV) outputs data mlruns mlruns.db .pytest_cache site

# featuretools (bench comparison only) needs pandas<3: its own pinned venv.
bench-venv-ft:
	$(PYTHON) -m venv .venv-ft
	.venv-ft/bin/python -m pip install --quiet -r bench/requirements-featuretools.lock
