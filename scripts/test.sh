#!/usr/bin/env bash
# The README's test command: install (cached), lint, then the whole test suite (CPU, offline).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
env_lines=$(bash scripts/install.sh)  # an assignment: a failed install stops here (set -e)
eval "$env_lines"
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VLA_PY" -m ruff check .
exec "$VLA_PY" -m pytest -q -p no:cacheprovider "$@"
