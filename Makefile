# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs first (once: the stamp file tracks pyproject.toml).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install redis demo run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[worker,test]"
	touch $(STAMP)

# An editable install leaves our own modules uncompiled; with PYTHONDONTWRITEBYTECODE
# set (common in containers) they would be compiled at every start
# (bench/startup.py). compileall redoes only what changed.
install: $(STAMP)
	@$(VENV)/bin/python -m compileall -q app bot cogs core workers >/dev/null

demo: install
	$(VENV)/bin/parodybot demo

run: install
	$(VENV)/bin/parodybot run

# The queue's network backend is tested against a real Redis server on loopback.
redis:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package) for the queue tests"; \
	  (apt-get install -y -qq redis-server || (apt-get update -qq && apt-get install -y -qq redis-server)) >/dev/null; }

test: install redis
	$(VENV)/bin/pytest -q

bench: install
	for b in bench/*.py; do case $$b in */_*) continue;; esac; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
