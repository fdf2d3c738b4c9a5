#!/usr/bin/env bash
# Install mlffd into ./.venv from the package registries: torch pinned to the CPU wheel first,
# then everything else under constraints.txt (so nothing moves torch), then the custom op
# library and the LAMMPS plugin.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all]"
.venv/bin/mlffd ops build
.venv/bin/mlffd lammps build
echo "mlffd installed in $(pwd)/.venv (activate with: source .venv/bin/activate)"
