#!/usr/bin/env bash
# The README's main job: install (cached), then run the end-to-end demo on embedded defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(bash scripts/install.sh)"
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1
exec "$VLA_PY" scripts/demo_synthetic.py "$@"
