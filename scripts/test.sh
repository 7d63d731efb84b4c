#!/usr/bin/env bash
# Set everything up (idempotent) and run the whole test suite: pure core, conversions on real
# data, SAM backends on tiny random configs, the LLM fusion against a local test server, and
# real nodes over DDS. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export HF_HUB_OFFLINE=1
cd "$ROOT"
exec python -m pytest "$@"
