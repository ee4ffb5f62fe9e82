# Two entry points on a fresh clone (see README):
#   make demo   create .venv, install sfdet, run the offline demo
#   make test   create .venv, install sfdet with its test references, run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: demo test test-all bench clean-venv

$(VENV)/.runtime-ok: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.test-ok: $(VENV)/.runtime-ok
	$(PIP) install -q -e ".[test,onnx]"
	# The AVA evaluator reference (ActivityNet/TF code shipped in MMAction2 0.24.1), loaded by path in tests.
	$(PIP) install -q --no-deps mmaction2==0.24.1
	touch $@

demo: $(VENV)/.runtime-ok
	$(VENV)/bin/sfdet demo

test: $(VENV)/.test-ok
	$(PY) -m pytest -q

test-all: $(VENV)/.test-ok
	$(PY) -m pytest -q -m ""

clean-venv:
	rm -rf $(VENV)
