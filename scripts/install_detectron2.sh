#!/usr/bin/env bash
# Build detectron2 from the vendored source archive into a cached wheel and install it (plus its runtime
# dependencies) into the venv, for sfdet's optional `detectron2:CONFIG` person detector and its tests.
#
#   bash scripts/install_detectron2.sh [PYTHON] [ARCHIVE]
#
# PYTHON   the venv's python (default .venv/bin/python)
# ARCHIVE  detectron2 source tarball (default: the newest ../shared/vendor/detectron2-*.tar.gz)
#
# A built wheel only fits the torch it was compiled against, so it is cached under
#   ${SFDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/sfdet/wheels}/torch-<torch version>/<archive stem>/
# and a machine that built it once (3-10 min on 2 CPU cores) reuses it. Without an archive this prints one
# line and exits 0: the detectron2 tests then skip.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${1:-.venv/bin/python}
ARCHIVE=${2:-}
if [[ -z "$ARCHIVE" ]]; then
    ARCHIVE=$(ls -1 ../shared/vendor/detectron2-*.tar.gz 2>/dev/null | sort | tail -n 1 || true)
fi
if [[ -z "$ARCHIVE" || ! -f "$ARCHIVE" ]]; then
    echo "install_detectron2: no detectron2 source archive (../shared/vendor/detectron2-*.tar.gz); skipping"
    exit 0
fi

PIP=("$PY" -m pip --disable-pip-version-check)
STEM=$(basename "$ARCHIVE" .tar.gz)
TORCH=$("$PY" -c 'import torch; print(torch.__version__)')
CACHE=${SFDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sfdet/wheels}/torch-$TORCH/$STEM

# Runtime dependencies first (the build then runs against the same setuptools): detectron2's model zoo
# imports pkg_resources, which setuptools 81 removed; iopath <0.1.10 is what fvcore/detectron2 pin.
"${PIP[@]}" install -q --no-warn-conflicts "setuptools<81" fvcore "iopath>=0.1.7,<0.1.10" omegaconf hydra-core pycocotools \
    tabulate termcolor yacs cloudpickle

WHEEL=$(ls -1 "$CACHE"/detectron2-*.whl 2>/dev/null | head -n 1 || true)
if [[ -z "$WHEEL" ]]; then
    echo "install_detectron2: building $STEM against torch $TORCH (a few minutes; cached in $CACHE)"
    mkdir -p "$(dirname "$CACHE")"
    work=$(mktemp -d "$(dirname "$CACHE")/.build-$STEM.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    tar xzf "$ARCHIVE" -C "$work"
    src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    # torch compiles MAX_JOBS files at a time only with ninja (else one by one): PyPI's when there is none.
    if ! command -v ninja >/dev/null; then
        "${PIP[@]}" install -q ninja && export PATH="$(dirname "$PY"):$PATH"
    fi
    start=$SECONDS
    MAX_JOBS=${MAX_JOBS:-2} FORCE_CUDA=${FORCE_CUDA:-0} \
        "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$work/wheel" "$src"
    # Publish atomically: a concurrent build of the same key leaves one complete wheel folder.
    mv -T "$work/wheel" "$CACHE" 2>/dev/null || true
    echo "install_detectron2: built in $((SECONDS - start)) s"
    WHEEL=$(ls -1 "$CACHE"/detectron2-*.whl | head -n 1)
else
    echo "install_detectron2: reusing $WHEEL"
fi
"${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL"
"$PY" -W ignore -c 'import detectron2, detectron2._C; from detectron2 import model_zoo; print("install_detectron2: detectron2", detectron2.__version__, "ready")'
