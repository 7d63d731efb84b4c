#!/usr/bin/env bash
# Set everything up (idempotent) and run the main demo: the bundled KITTI frames through the
# KITTI player and the perception node over real DDS. Extra arguments go to the demo
# (python -m samfusion.ros.demo --help), e.g. --out out/demo --rate 0.5.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
cd "$ROOT"
exec python -m samfusion.ros.demo "$@"
