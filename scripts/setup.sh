#!/usr/bin/env bash
# Makes a virtual environment in .venv at the checkout's root and installs kerasdet into it
# (editable) with the test extras. Safe to run again: it reuses the environment.
#   bash scripts/setup.sh            # runtime + tests
#   EXTRAS=dev,bench bash scripts/setup.sh   # also the benchmark peers
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
extras="${EXTRAS:-dev}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "[setup] installing kerasdet[$extras] (first run downloads TensorFlow, a few minutes)"
.venv/bin/python -m pip install --quiet -e ".[$extras]"
.venv/bin/python -c "import kerasdet, keras, tensorflow as tf; print('[setup] kerasdet', kerasdet.__version__, '| keras', keras.__version__, '| tensorflow', tf.__version__)"
