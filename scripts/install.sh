#!/usr/bin/env bash
# Install LLaDA-VLA and its pinned stack into a virtual environment, then print its path.
#
# The environment lives outside the clone (default ~/.cache/llada-vla/venv-<hash>), keyed
# by a hash of the dependency spec in pyproject.toml, so a second run with the same spec
# reuses it and only re-links the package (seconds). Debian packages (ffmpeg for
# LeRobot's video decoding, EGL/OSMesa for headless MuJoCo) are installed when missing.
#   usage: eval "$(bash scripts/install.sh)"   # exports VLA_PY=<venv>/bin/python
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[install] $*" >&2; }

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q libEGL.so.1 || need_apt+=(libegl1)
ldconfig -p 2>/dev/null | grep -q libOSMesa || need_apt+=(libosmesa6)
ldconfig -p 2>/dev/null | grep -q libGL.so.1 || need_apt+=(libgl1)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1
  else
    log "warning: missing system packages (${need_apt[*]}); install them with your package manager"
  fi
fi

py=${PYTHON:-python3.11}
command -v "$py" >/dev/null 2>&1 || py=python3
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' >/dev/null 2>&1 || {
  log "error: Python 3.11 is required (lerobot 0.4.4 + torch 2.10 pin); found $($py --version 2>&1). Set PYTHON=/path/to/python3.11"
  exit 1
}
# Key: the dependency spec only (bump ENV_REV when the install steps below change).
ENV_REV=1
hash=$("$py" - "$root/pyproject.toml" "$ENV_REV" <<'PY' | sha256sum | cut -c1-12
import json, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(json.dumps([p["dependencies"], p.get("optional-dependencies"), p["requires-python"], sys.argv[2]]))
PY
)
venv=${VLA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/llada-vla/venv-$hash}
if [ ! -f "$venv/.complete" ]; then
  log "creating $venv (first run downloads the pinned stack, a few minutes)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # One resolve for the whole stack: installing metaworld over mujoco 4 breaks mujoco.
  "$venv/bin/python" -m pip install -q -e "$root[dev]" >&2
  touch "$venv/.complete"
else
  # Re-link this clone into the cached environment (seconds); quiet unless it fails.
  if ! "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >/tmp/vla-relink.log 2>&1; then
    cat /tmp/vla-relink.log >&2; exit 1
  fi
fi
echo "export VLA_PY=$venv/bin/python"
# and the environment's console scripts (lerobot-train, lerobot-eval) on PATH, as the README uses them
echo "export PATH=\"$venv/bin:\$PATH\""
