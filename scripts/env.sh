# Source me (bash): activates the venv and the colcon install, keeps DDS on this machine.
_sf_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# colcon's setup scripts read unset variables: relax `set -u` while sourcing them.
case $- in *u*) _sf_nounset=1; set +u ;; *) _sf_nounset= ;; esac
# shellcheck disable=SC1091
source "${SAMFUSION_VENV:-$_sf_root/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
if [ -f "$_sf_root/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$_sf_root/install/setup.bash"
fi
# The source tree first, so modules added since the last colcon build are importable.
export PYTHONPATH="$_sf_root/src${PYTHONPATH:+:$PYTHONPATH}"
# Discovery stays on loopback. ROS_DOMAIN_ID is left to you (scripts/demo.sh and scripts/test.sh
# pick a random one when it is unset, so parallel runs do not see each other).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Large images / clouds over shared memory, UDP on loopback only (config/fastdds_localhost.xml).
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_sf_root/config/fastdds_localhost.xml}"
[ -n "$_sf_nounset" ] && set -u
unset _sf_root _sf_nounset
