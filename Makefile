# One command to run the service, one to run the tests; each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
NODES ?= 4

.PHONY: run cluster test test-fast bench clean

$(BIN)/twistd: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(BIN)/twistd

run: $(BIN)/twistd
	$(BIN)/twistd --pidfile= -n gamesvc --port $(PORT)

# NODES processes sharing PORT (SO_REUSEPORT) with one redis-server and one embedded store; Ctrl-C stops them all.
cluster: $(BIN)/twistd
	$(BIN)/python -m gamesvc.devcluster --nodes $(NODES) --port $(PORT)

test: $(BIN)/twistd
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

test-fast: $(BIN)/twistd
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -m "not browser"

$(VENV)/.bench-deps: $(BIN)/twistd setup.cfg
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' --config-settings editable_mode=compat
	touch $@

# The Node reference of bench.compare needs `ws`; without node or npm the comparison is skipped with a note.
bench: $(VENV)/.bench-deps
	-test -d bench/work/node/node_modules/ws || (command -v npm >/dev/null && mkdir -p bench/work/node && cd bench/work/node && npm install --no-save ws@8)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
