#!/usr/bin/env bash
# The README's main job: install (cached), then the tabletop pipeline on embedded defaults:
# collect expert demos, train the tiny preset, evaluate on unseen seeds (with the expert and
# random anchors), print the success rate and the report path.
# Extra arguments go to scripts/pipeline.py (e.g. --tasks all --steps 4000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
env_lines=$(bash scripts/install.sh)  # an assignment: a failed install stops here (set -e)
eval "$env_lines"
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1
exec "$VLA_PY" scripts/pipeline.py "$@"
