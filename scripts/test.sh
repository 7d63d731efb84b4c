#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: pure core, conversions on real
# data, SAM backends on tiny random configs, the LLM fusion against a local test server, and
# real nodes over DDS. Extra arguments go to pytest.
#
# Then the torchvision lane: test/segmentation again in .venv-tv (torch + torchvision), where
# our SAM pre/post-processing is compared with the transformers processors themselves
# (test_processor_parity.py). SAMFUSION_TORCHVISION_LANE=0 skips it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export HF_HUB_OFFLINE=1
cd "$ROOT"
python -m pytest "$@"

if [ "${SAMFUSION_TORCHVISION_LANE:-1}" = 0 ]; then
  exit 0
fi
lane=0
bash "$ROOT/scripts/setup_torchvision_lane.sh" || lane=$?
if [ "$lane" = 3 ]; then
  exit 0  # no pins for this CPU architecture: said so above
elif [ "$lane" != 0 ]; then
  exit "$lane"
fi
echo "[test] torchvision lane: test/segmentation with the transformers processors"
PYTHONPATH="$ROOT/src" "${SAMFUSION_TV_VENV:-$ROOT/.venv-tv}/bin/python" -m pytest -q -p no:cacheprovider \
  test/segmentation
