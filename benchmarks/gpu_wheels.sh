#!/usr/bin/env bash
# Fetch, on this machine (which reaches PyPI), the wheels that the GPU machine lacks for the
# calculator test of benchmarks/gpu_check.sh: ase and vesin, at the versions installed here, for
# the GPU machine's Python 3.12. They land in .whl/ (git-ignored); the device run names .whl in
# `carry`, and gpu_check.sh installs them into /tmp/site when the folder is there.
#
#     bash benchmarks/gpu_wheels.sh [PYTHON]        # PYTHON: the interpreter with ase and vesin (.venv/bin/python)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${1:-$ROOT/.venv/bin/python}
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf "$ROOT/.whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$ROOT/.whl" "ase==$(version ase)" "vesin==$(version vesin)"
ls -l "$ROOT/.whl"
