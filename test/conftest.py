"""Shared pytest fixtures and the process environment every test inherits.

DDS discovery is kept on loopback and every test run gets its own ROS domain, so test runs
never talk to each other or send multicast off the machine.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.pop("ROS_LOCALHOST_ONLY", None)
if "ROS_DOMAIN_ID" not in os.environ:
    os.environ["ROS_DOMAIN_ID"] = str(random.Random(os.getpid()).randint(1, 100))

REPO_ROOT = Path(__file__).resolve().parents[1]
# Camera images are larger than Fast DDS's default shared-memory segment; without this profile
# best-effort readers lose fragmented frames (see config/fastdds_localhost.xml).
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_localhost.xml"))


def _find_shared_data() -> Path:
    """The real recorded data set: ../shared/data beside the checkout (SOURCES.md there)."""
    candidate = REPO_ROOT.parent / "shared" / "data"
    if not (candidate / "kitti_object").is_dir():
        raise FileNotFoundError(f"real sensor data not found in {candidate}")
    return candidate


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real recorded data (KITTI, nuScenes, OpenCalib, Ouster, SAM demo)."""
    return _find_shared_data()
