"""Session fixtures for the point-cloud tests: real frames labelled by 2D-box masks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._data import LabelledFrame, kitti_box_labelled, nuscenes_box_labelled


@pytest.fixture(scope="session")
def kitti_labelled(shared_data: Path) -> dict[str, LabelledFrame]:
    return {f: kitti_box_labelled(shared_data, f) for f in ("000000", "000001", "000002")}


@pytest.fixture(scope="session")
def nuscenes_labelled(shared_data: Path) -> LabelledFrame:
    return nuscenes_box_labelled(shared_data)
