"""The bundled nuScenes keyframe (6 cameras + LIDAR_TOP + 3D boxes) as prompts and ground truth.

``annotations.json`` holds 3D boxes (LIDAR_TOP frame, gravity centre, ``[x, y, z, l, w, h, yaw]``)
and, per camera, 2D boxes (``cam_instances``) with the same object's 3D box in that camera's
frame but no link to the 3D list. :func:`load_sample` links them: the camera-frame centre,
moved to LIDAR_TOP with the inverse of ``lidar2cam``, coincides with exactly one 3D centre (to
about 1e-6 m on this sample; a match farther than ``match_tol_m`` raises). Object ``i`` of the
3D list gets prompt id ``i + 1`` in every camera that has a 2D box of it, so the cameras share
one id per object, and :func:`object_accuracy` scores the labeled cloud per object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from samfusion.errors import CalibrationError, ConversionError
from samfusion.geometry.calibration import CameraRig, load_nuscenes_calib
from samfusion.offline.prompts_file import ScheduledPrompt
from samfusion.pointcloud.objects3d import points_in_box
from samfusion.segmentation.prompts import BoxPrompt

__all__ = ["SampleObject", "NuscenesSample", "load_sample", "sample_prompts", "ObjectResult", "in_view",
           "object_accuracy"]


@dataclass(frozen=True)
class SampleObject:
    """One annotated 3D box and the 2D boxes (camera -> x0, y0, x1, y1) it has."""

    index: int
    label: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # length, width, height
    yaw: float
    num_lidar_pts: int
    boxes_2d: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def object_id(self) -> int:
        return self.index + 1


@dataclass(frozen=True)
class NuscenesSample:
    root: Path
    rigs: dict[str, CameraRig]
    images: dict[str, Path]
    cloud_path: Path
    lidar_stamp: float
    camera_stamps: dict[str, float]
    objects: list[SampleObject]


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc


def load_sample(root: str | Path, match_tol_m: float = 0.01) -> NuscenesSample:
    """Calibration, image and scan paths, and the 3D objects with their per-camera 2D boxes."""
    root = Path(root)
    calib, ann = _load_json(root / "calib.json"), _load_json(root / "annotations.json")
    rigs = load_nuscenes_calib(root / "calib.json")
    names = {v: k for k, v in ann["categories"].items()}
    inst = ann["instances"]
    centres = np.array([o["bbox_3d"][:3] for o in inst], dtype=np.float64).reshape(-1, 3)
    boxes: list[dict[str, tuple[float, float, float, float]]] = [{} for _ in inst]
    for camera, items in ann["cam_instances"].items():
        if camera not in rigs:
            raise CalibrationError(f"annotations name camera {camera}, which calib.json does not have")
        T_lidar_from_cam = rigs[camera].T_cam_from_lidar.inverse()
        for item in items:
            centre = T_lidar_from_cam.apply(np.asarray([item["bbox_3d"][:3]], dtype=np.float64))[0]
            dist = np.linalg.norm(centres - centre, axis=1)
            k = int(np.argmin(dist))
            if dist[k] > match_tol_m:
                raise ConversionError(f"{camera} 2D box {item['bbox']} matches no 3D box (nearest {dist[k]:.3f} m)")
            x0, y0, x1, y1 = (float(v) for v in item["bbox"])
            boxes[k][camera] = (x0, y0, x1, y1)
    objects = [SampleObject(i, names.get(o["bbox_label_3d"], f"other ({o['bbox_label_3d']})"),
                            tuple(float(v) for v in o["bbox_3d"][:3]), tuple(float(v) for v in o["bbox_3d"][3:6]),
                            float(o["bbox_3d"][6]), int(o["num_lidar_pts"]), boxes[i])
               for i, o in enumerate(inst)]
    return NuscenesSample(root=root, rigs=rigs,
                          images={c: root / v["file"] for c, v in calib["cameras"].items()},
                          cloud_path=root / calib["lidar"]["file"], lidar_stamp=float(calib["timestamp"]),
                          camera_stamps={c: float(v["timestamp"]) for c, v in calib["cameras"].items()},
                          objects=objects)


def sample_prompts(sample: NuscenesSample, min_points: int = 0) -> list[ScheduledPrompt]:
    """One box prompt per (object, camera) 2D box; objects with fewer LiDAR points are left out."""
    return [ScheduledPrompt(camera=camera, object_id=o.object_id, label=o.label, box=BoxPrompt(*box))
            for o in sample.objects if o.num_lidar_pts >= min_points
            for camera, box in sorted(o.boxes_2d.items())]


@dataclass(frozen=True)
class ObjectResult:
    """Per object: points in its box, points labeled with its id, and those that are in the box."""

    object_id: int
    label: str
    in_view: bool
    prompted: bool
    gt_points: int
    labeled_points: int
    true_positives: int

    @property
    def received_label(self) -> bool:
        return self.true_positives > 0

    @property
    def precision(self) -> float:
        return self.true_positives / self.labeled_points if self.labeled_points else float("nan")

    @property
    def recall(self) -> float:
        return self.true_positives / self.gt_points if self.gt_points else float("nan")


def in_view(sample: NuscenesSample, centre: Sequence[float]) -> bool:
    """True when the box centre projects into at least one camera image (in front of it)."""
    for rig in sample.rigs.values():
        p = rig.T_cam_from_lidar.apply(np.asarray([centre], dtype=np.float64))
        uv, front = rig.camera_model.project(p, min_depth=0.0)
        w, h = rig.camera_model.image_size
        if bool(front[0]) and 0 <= uv[0, 0] < w and 0 <= uv[0, 1] < h:
            return True
    return False


def object_accuracy(sample: NuscenesSample, xyz: np.ndarray, instance: np.ndarray,
                    prompted_ids: Sequence[int] | None = None) -> list[ObjectResult]:
    """Score a labeled cloud of the sample's scan: one row per annotated object."""
    prompted = set(prompted_ids) if prompted_ids is not None else {o.object_id for o in sample.objects if o.boxes_2d}
    rows = []
    for o in sample.objects:
        inside = points_in_box(xyz, o.center, o.size, o.yaw)
        mine = instance == o.object_id
        rows.append(ObjectResult(o.object_id, o.label, in_view(sample, o.center), o.object_id in prompted,
                                 int(inside.sum()), int(mine.sum()), int((inside & mine).sum())))
    return rows
