#!/usr/bin/env bash
# Makes the SEPARATE virtual environment that holds the torchvision peer of benchmarks/two_stage.py
# (torch never goes into the project's .venv: the two stacks would share one process' thread pools
# and their CUDA / MKL / oneDNN libraries would fight over the same names).
#   bash benchmarks/make_torch_env.sh                      # -> benchmarks/.torch-venv
#   TORCH_VENV=/some/where bash benchmarks/make_torch_env.sh
# Plain `pip install torch torchvision` from PyPI: about 5.5 GB with the CUDA libraries it pulls
# in on Linux, expected (only PyPI is reachable here). Safe to run again: it reuses the environment.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TORCH_VENV:-$root/benchmarks/.torch-venv}"
python="${PYTHON:-python3}"
case "$(cd "$(dirname "$venv")" 2>/dev/null && pwd)/$(basename "$venv")" in
  "$root/.venv"|"$root/.venv/"*) echo "[torch-env] refusing to install torch into the project's .venv ($venv)" >&2; exit 2;;
esac
if [ ! -x "$venv/bin/python" ]; then
  echo "[torch-env] creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "[torch-env] installing torch and torchvision (several GB on the first run)"
"$venv/bin/python" -m pip install --quiet torch torchvision
"$venv/bin/python" -c "import torch, torchvision; print('[torch-env]', '$venv', '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| threads', torch.get_num_threads())"
