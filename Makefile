# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs first (once: the stamp file tracks pyproject.toml).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install demo run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[worker,test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/parodybot demo

run: install
	$(VENV)/bin/parodybot run

test: install
	$(VENV)/bin/pytest -q

bench: install
	for b in bench/*.py; do case $$b in */_*) continue;; esac; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
