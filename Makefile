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

$(VENV)/.test-ok: $(VENV)/.runtime-ok scripts/install_detectron2.sh
	$(PIP) install -q -e ".[test,onnx]"
	# The AVA evaluator reference (ActivityNet/TF code shipped in MMAction2 0.24.1), loaded by path in tests.
	$(PIP) install -q --no-deps mmaction2==0.24.1
	# The MultiSports video-mAP reference (MMAction2 1.x multisports_utils.py), extracted from the 1.2.0 wheel.
	test -f $(VENV)/reference/mmaction2-1.2.0/multisports_utils.py || ( $(PIP) download -q --no-deps mmaction2==1.2.0 -d $(VENV)/reference && \
	  $(PY) -c "import zipfile,glob,pathlib; z=zipfile.ZipFile(glob.glob('$(VENV)/reference/mmaction2-1.2.0-*.whl')[0]); p=pathlib.Path('$(VENV)/reference/mmaction2-1.2.0/multisports_utils.py'); p.parent.mkdir(parents=True,exist_ok=True); p.write_bytes(z.read('mmaction/evaluation/functional/multisports_utils.py'))" )
	# detectron2 (optional person detector) has no PyPI wheel: built from ../shared/vendor's source when it is
	# there, cached per torch version (scripts/install_detectron2.sh); without it its tests skip.
	$(if $(wildcard ../shared/vendor/detectron2-*.tar.gz),bash scripts/install_detectron2.sh $(PY))
	touch $@

demo: $(VENV)/.runtime-ok
	$(VENV)/bin/sfdet demo

test: $(VENV)/.test-ok
	$(PY) -m pytest -q

test-all: $(VENV)/.test-ok
	$(PY) -m pytest -q -m ""

clean-venv:
	rm -rf $(VENV)
