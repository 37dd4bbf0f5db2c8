# Two commands: `make run` starts the hub (with a demo site and its agent), `make test` runs the tests.
# See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HUB_PORT ?= 8000

.PHONY: run test test-smoke lint schema clean native

# The small-file lane's C core (agent/native/). Optional: without a C compiler and OpenSSL's
# headers the build is skipped with a warning and the lane runs its Python loop.
CC ?= cc
NATIVE := agent/native/liblanecore.so.1
$(NATIVE): agent/native/lanecore.c
	@$(CC) -O2 -fPIC -shared -Wall -Wextra -o $@.tmp $< -lcrypto && mv $@.tmp $@ \
		|| { rm -f $@.tmp; echo "warning: $(NATIVE) not built; the small-file lane runs in Python"; }

native: $(NATIVE)

$(VENV)/.runtime-installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.test-installed: $(VENV)/.runtime-installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	@touch $@

run: $(VENV)/.runtime-installed native
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_admin
	$(PY) manage.py ensure_demo
	exec $(PY) manage.py runhub

test: $(VENV)/.test-installed native
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick part of the suite that proves the fresh-machine path (SQLite + filesystem broker).
test-smoke: $(VENV)/.test-installed native
	$(PY) -m pytest -m smoke $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .

schema: $(VENV)/.runtime-installed
	$(PY) manage.py spectacular --file schema.yaml --validate --fail-on-warn

clean:
	rm -rf $(VENV) .pytest_cache $(NATIVE)
