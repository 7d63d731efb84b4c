#!/usr/bin/env bash
# The torchvision test lane: a second virtualenv (.venv-tv) with torch + torchvision, where the
# transformers SAM image processors and SAM 3's exemplar pooling run, so test/segmentation can
# compare our torch pre/post-processing with them (test_processor_parity.py). torchvision does
# not import beside the main venv's CPU torch 2.13.0, hence a separate venv. Idempotent; no ROS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAMFUSION_TV_VENV:-$ROOT/.venv-tv}"
PYTHON="${SAMFUSION_PYTHON:-python3}"
REQ="$ROOT/requirements/torchvision-lane"
log() { printf '[setup torchvision lane] %s\n' "$*"; }

arch="$(uname -m)"
if [ ! -f "$REQ/$arch.txt" ]; then
  log "no torch/torchvision pins for $arch (see $REQ); skipping the lane"
  exit 3
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.samfusion-requirements.sha256"
want="$(cat "$REQ/$arch.txt" "$REQ/common.txt" "$ROOT/requirements/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing torch + torchvision ($(grep -v '^#' "$REQ/$arch.txt" | xargs)) and transformers"
  # the main constraints pin the CPU torch: drop that pin, keep the others
  constraints="$(mktemp)"
  trap 'rm -f "$constraints"' EXIT
  grep -v -E '^(torch|torchvision)==' "$ROOT/requirements/constraints.txt" > "$constraints"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$REQ/$arch.txt" -r "$REQ/common.txt" -c "$constraints"
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi
"$VENV/bin/python" -c "import torch, torchvision; print('[setup torchvision lane] torch', torch.__version__, 'torchvision', torchvision.__version__)"
