"""LiDAR -> camera extrinsics from calibration files or flat parameter lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from samfusion.errors import CalibrationError
from samfusion.geometry.calibration import load_kitti_calib, load_nuscenes_calib
from samfusion.geometry.transform import RigidTransform

__all__ = ["detect_format", "load_extrinsics", "extrinsics_from_flat"]


def detect_format(path: Path) -> str:
    if path.suffix == ".txt":
        return "kitti"
    if path.is_dir() or path.name == "calib.json":
        return "nuscenes"
    if path.suffix == ".json":
        try:
            tree = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read calibration {path}: {exc}") from exc
        if isinstance(tree, dict) and "cameras" in tree:
            return "nuscenes"
        return "opencalib"
    raise CalibrationError(f"cannot tell the format of calibration file {path}; set extrinsics_format")


def load_extrinsics(path: str | Path, fmt: str, camera_names: Sequence[str]) -> dict[str, RigidTransform]:
    """T_camera_from_lidar for each camera in ``camera_names`` found in the file.

    KITTI calib txt and OpenCalib extrinsic json hold one camera: it is given to every name.
    nuScenes calib.json is keyed by camera name (CAM_FRONT, ...); names must match.
    """
    path = Path(path)
    if not path.exists():
        raise CalibrationError(f"calibration file {path} does not exist")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "kitti":
        transform = load_kitti_calib(path, image_size=(1, 1)).T_cam_from_velo
        return {name: transform for name in camera_names}
    if fmt == "nuscenes":
        rigs = load_nuscenes_calib(path, image_size=(1600, 900))
        missing = [n for n in camera_names if n not in rigs]
        if missing:
            raise CalibrationError(f"calibration {path} has no camera {missing}; it has {sorted(rigs)}")
        return {n: rigs[n].T_cam_from_lidar for n in camera_names}
    if fmt == "opencalib":
        try:
            tree = json.loads(path.read_text())
            (body,) = tree.values()
            data = body["param"]["sensor_calib"]["data"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CalibrationError(
                f"calibration {path}: expected one '<sensor>-extrinsic' object with param.sensor_calib.data"
            ) from exc
        transform = RigidTransform.from_matrix(np.asarray(data, dtype=np.float64).reshape(4, 4),
                                               orthonormalize=True)
        return {name: transform for name in camera_names}
    raise CalibrationError(f"unknown extrinsics format '{fmt}' (auto, kitti, nuscenes, opencalib)")


def extrinsics_from_flat(values: Sequence[float], camera_names: Sequence[str]) -> dict[str, RigidTransform]:
    """7 numbers per camera (x y z qx qy qz qw of T_camera_from_lidar), in camera order."""
    if not values:
        return {}
    if len(values) != 7 * len(camera_names):
        raise CalibrationError(
            f"extrinsics has {len(values)} numbers; expected 7 per camera x {len(camera_names)} cameras"
        )
    arr = np.asarray(values, dtype=np.float64).reshape(-1, 7)
    return {name: RigidTransform.from_translation_quaternion(row[:3], row[3:])
            for name, row in zip(camera_names, arr)}
