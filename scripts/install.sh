#!/usr/bin/env bash
# Install LLaDA-VLA and its pinned stack, then print the environment to use.
#
# Two environments, both outside the clone (default ~/.cache/llada-vla/):
# - venv-<deps hash>: the pinned dependencies only, keyed by a hash of the dependency spec in
#   pyproject.toml and shared by every clone (the first run downloads it, a few minutes;
#   VLA_VENV overrides its path);
# - clones/<deps hash>-<path hash>: this clone's own small environment, keyed by the clone's
#   absolute path. It sees the shared packages through a .pth file and holds only this
#   clone's editable install and console scripts (lerobot-train, accelerate, ruff, ...)
#   that run with it. So what VLA_PY imports never depends on which clone installed last.
# Creating the shared environment and (re-)linking a clone each run under flock, so two
# installs at once wait for each other instead of racing pip. Debian packages (ffmpeg for
# LeRobot's video decoding, EGL/OSMesa for headless MuJoCo) are installed when missing.
#   usage: eval "$(bash scripts/install.sh)"   # exports VLA_PY=<clone env>/bin/python and PATH
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
# Key: the dependency spec only (bump ENV_REV when the install steps below change what the
# shared environment holds).
ENV_REV=1
hash=$("$py" - "$root/pyproject.toml" "$ENV_REV" <<'PY' | sha256sum | cut -c1-12
import json, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print(json.dumps([p["dependencies"], p.get("optional-dependencies"), p["requires-python"], sys.argv[2]]))
PY
)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/llada-vla
venv=${VLA_VENV:-$cache/venv-$hash}
clone="$(dirname "$venv")/clones/$hash-$(printf %s "$root" | sha256sum | cut -c1-12)"
mkdir -p "$(dirname "$venv")" "$(dirname "$clone")"

locked() {  # locked FILE CMD...: run CMD holding an exclusive lock on FILE
  local lock=$1
  shift
  if command -v flock >/dev/null 2>&1; then
    ( flock 9; "$@" ) 9>"$lock"
  else
    log "warning: no flock; do not run two installs at once"
    "$@"
  fi
}

make_shared() {  # the dependencies, one resolve for the whole stack (metaworld over mujoco 4 breaks mujoco)
  [ -f "$venv/.complete" ] && return 0
  log "creating $venv (first run downloads the pinned stack, a few minutes)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  local reqs
  mapfile -t reqs < <("$py" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(t["project"]["dependencies"] + t["project"]["optional-dependencies"]["dev"] + t["build-system"]["requires"]))
PY
)
  "$venv/bin/python" -m pip install -q "${reqs[@]}" >&2
  touch "$venv/.complete"
}

make_clone() {  # this clone's environment: the shared packages (.pth), its editable install, its console scripts
  [ -x "$clone/bin/python" ] || { rm -rf "$clone"; "$venv/bin/python" -m venv --without-pip "$clone"; }
  local site shared stamp f name
  site=$("$clone/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  shared=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # The shared site-packages with its own .pth files, except any llada-vla install there
  # (environments made by earlier versions of this script hold one, linked to some clone).
  cat >"$site/_vla_shared_env.py" <<PY
"""Written by scripts/install.sh: the shared dependency environment on sys.path, after this one."""
import os, site, sys

SHARED = "$shared"
if SHARED not in sys.path:
    sys.path.append(SHARED)
    known = {os.path.normcase(p) for p in sys.path}
    for name in sorted(os.listdir(SHARED)):
        if name.endswith(".pth") and "llada_vla" not in name:
            site.addpackage(SHARED, name, known)
PY
  echo "import _vla_shared_env" >"$site/_vla_shared_env.pth"
  stamp="$root $(sha256sum "$root/pyproject.toml" | cut -c1-12)"  # the package layout
  if [ "$(cat "$clone/.linked" 2>/dev/null)" != "$stamp" ]; then
    if ! "$clone/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >"$clone/link.log" 2>&1; then
      cat "$clone/link.log" >&2
      return 1
    fi
    echo "$stamp" >"$clone/.linked"
  fi
  # Console scripts of the shared environment, re-pointed at this clone's interpreter.
  for f in "$venv"/bin/*; do
    name=$(basename "$f")
    case $name in python*|activate*|Activate*) continue ;; esac
    if [ -f "$f" ] && head -n 1 "$f" | grep -qE "^#!$venv/bin/python[0-9.]*$"; then
      { echo "#!$clone/bin/python"; tail -n +2 "$f"; } >"$clone/bin/.$name.tmp"
      chmod +x "$clone/bin/.$name.tmp"
      mv -f "$clone/bin/.$name.tmp" "$clone/bin/$name"
    fi
  done
}

locked "$venv.lock" make_shared
locked "$clone.lock" make_clone
echo "export VLA_PY=$clone/bin/python"
# and the console scripts (lerobot-train, lerobot-eval) on PATH, as the README uses them;
# the shared bin/ after it for its other tools
echo "export PATH=\"$clone/bin:$venv/bin:\$PATH\""
