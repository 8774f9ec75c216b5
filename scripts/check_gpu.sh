#!/usr/bin/env bash
# Run every CUDA path the code claims on this machine's GPU, in under 8 minutes: the Triton LSC
# epilogue on the device against its reference, EGL-rendered demos, training steps with bf16
# autocast, bench_decode.py --device cuda for tiny and small (eager and compiled with CUDA
# graphs), an evaluation of a few episodes. Figures and what could not run go to
# OUT/check_gpu.json (steps: vla/bench/gpu_check.py). Without CUDA it runs nothing, says so and
# exits 0.
#   usage: bash scripts/check_gpu.sh [OUT]      # default outputs/check_gpu
# VLA_PY: the Python to use (default: the one scripts/install.sh makes; a machine without
# network needs it set to an environment that holds the stack).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${VLA_PY:-}" ]; then
  env_lines=$(bash scripts/install.sh)
  eval "$env_lines"
fi
exec "$VLA_PY" -c 'import sys; from pathlib import Path; from vla.bench.gpu_check import main; sys.exit(main(Path(sys.argv[1])))' \
  "${1:-outputs/check_gpu}"
