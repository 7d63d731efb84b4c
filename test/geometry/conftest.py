"""Real-data fixtures for the geometry and labeling tests (KITTI, nuScenes, OpenCalib)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from samfusion.geometry import CameraRig, KittiCalibration, load_kitti_calib, load_nuscenes_calib, load_opencalib


@dataclass
class KittiFrame:
    points: np.ndarray  # (N, 4) float32 x y z reflectance, velodyne frame
    calib: KittiCalibration
    labels: list[dict]


def read_kitti_labels(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        out.append(
            {
                "type": f[0],
                "box2d": [float(v) for v in f[4:8]],
                "hwl": [float(v) for v in f[8:11]],
                "xyz": [float(v) for v in f[11:14]],  # bottom centre, rectified camera-0 frame
                "ry": float(f[14]),
            }
        )
    return out


@pytest.fixture(scope="session")
def kitti_frames(shared_data: Path) -> dict[str, KittiFrame]:
    root = shared_data / "kitti_object"
    frames = {}
    for stem in ("000000", "000001", "000002"):
        pts = np.fromfile(root / "velodyne" / f"{stem}.bin", dtype=np.float32).reshape(-1, 4)
        calib = load_kitti_calib(root / "calib" / f"{stem}.txt")
        frames[stem] = KittiFrame(pts, calib, read_kitti_labels(root / "label_2" / f"{stem}.txt"))
    return frames


@pytest.fixture(scope="session")
def nuscenes_dir(shared_data: Path) -> Path:
    return shared_data / "nuscenes_mini_sample"


@pytest.fixture(scope="session")
def nuscenes_rigs(nuscenes_dir: Path) -> dict[str, CameraRig]:
    return load_nuscenes_calib(nuscenes_dir / "calib.json")


@pytest.fixture(scope="session")
def nuscenes_annotations(nuscenes_dir: Path) -> dict:
    return json.loads((nuscenes_dir / "annotations.json").read_text())


@pytest.fixture(scope="session")
def nuscenes_points(nuscenes_dir: Path) -> np.ndarray:
    path = next(nuscenes_dir.glob("*LIDAR_TOP*.pcd.bin"))
    return np.fromfile(path, dtype=np.float32).reshape(-1, 5)


@pytest.fixture(scope="session")
def opencalib_dir(shared_data: Path) -> Path:
    return shared_data / "opencalib_lidar2camera"


@pytest.fixture(scope="session")
def opencalib_rig(opencalib_dir: Path) -> CameraRig:
    return load_opencalib(
        opencalib_dir / "center_camera-intrinsic.json",
        opencalib_dir / "top_center_lidar-to-center_camera-extrinsic.json",
        (1920, 1200),
    )


@pytest.fixture(scope="session")
def opencalib_points(opencalib_dir: Path) -> np.ndarray:
    """0.pcd parsed here with numpy: skip the header up to 'DATA ascii', then x y z intensity rows."""
    lines = (opencalib_dir / "0.pcd").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("DATA ascii")) + 1
    header = {line.split()[0]: line.split()[1:] for line in lines[: start - 1] if line and not line.startswith("#")}
    pts = np.loadtxt(lines[start:], dtype=np.float64)
    assert pts.shape == (int(header["POINTS"][0]), len(header["FIELDS"]))
    return pts
