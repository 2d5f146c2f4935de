#!/usr/bin/env bash
# Creates .venv and installs the toolkit with everything its tests need.
# torch is pinned to the CPU wheel first so that no requirement can pull a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,deploy,realdata,peers]"
.venv/bin/python -c "import torch; assert '+cu' not in torch.__version__, torch.__version__"
