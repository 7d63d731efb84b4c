"""Real-data loaders for the point-cloud tests (KITTI frames, the nuScenes sweep, Ouster).

Deliberately independent of samfusion.convert / samfusion.geometry: scans are read with
np.fromfile and projections are written out here, so these tests only exercise pointcloud.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samfusion.pointcloud.kitti_boxes import (
    KittiLabel,
    kitti_box_to_velo,
    parse_label_file,
    velo_from_rect,
)
from samfusion.pointcloud.objects3d import box_corners

NUSCENES_LIDAR = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"


@dataclass
class LabelledFrame:
    """A real cloud labelled by 2D-box masks (worst-case bleed) with its ground-truth 3D boxes."""

    xyz: np.ndarray  # (N, 3) float64
    instance: np.ndarray  # (N,) uint32, id k+1 for boxes[k]
    depth: np.ndarray  # (N,) camera depth where labelled, else range
    boxes: list[tuple[np.ndarray, np.ndarray, float]]  # velodyne/lidar frame center, size, yaw


def read_kitti_calib(path: Path) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            key, rest = line.split(":", 1)
            values[key.strip()] = np.array(rest.split(), dtype=np.float64)
    return values


def load_kitti(root: Path, frame: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], list[KittiLabel]]:
    """(scan (N, 4) float32, T_velo_from_rect, calib dict, labels) of a KITTI frame."""
    base = root / "kitti_object"
    scan = np.fromfile(base / "velodyne" / f"{frame}.bin", dtype=np.float32).reshape(-1, 4)
    calib = read_kitti_calib(base / "calib" / f"{frame}.txt")
    t_velo_from_rect = velo_from_rect(calib["R0_rect"], calib["Tr_velo_to_cam"])
    labels = parse_label_file((base / "label_2" / f"{frame}.txt").read_text())
    return scan, t_velo_from_rect, calib, labels


def _paint(instance: np.ndarray, u: np.ndarray, v: np.ndarray, ok: np.ndarray,
           boxes_2d: list[tuple[float, int, tuple[float, float, float, float]]]) -> None:
    """Paint ids into points whose pixel lies in a 2D box; nearer boxes are painted last."""
    for _, inst_id, (x1, y1, x2, y2) in sorted(boxes_2d, key=lambda b: -b[0]):
        inside = ok & (u >= x1) & (u <= x2) & (v >= y1) & (v <= y2)
        instance[inside] = inst_id


def kitti_box_labelled(root: Path, frame: str) -> LabelledFrame:
    scan, t_velo_from_rect, calib, labels = load_kitti(root, frame)
    xyz = scan[:, :3].astype(np.float64)
    rect_from_velo = np.linalg.inv(t_velo_from_rect)
    cam = xyz @ rect_from_velo[:3, :3].T + rect_from_velo[:3, 3]
    p2 = calib["P2"].reshape(3, 4)
    uvw = cam @ p2[:, :3].T + p2[:, 3]
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    boxes = [kitti_box_to_velo(lab, t_velo_from_rect) for lab in labels if lab.has_box]
    boxes_2d = [
        (float(np.linalg.norm(b[0])), k + 1, lab.bbox)
        for k, (b, lab) in enumerate(zip(boxes, [lab for lab in labels if lab.has_box]))
    ]
    instance = np.zeros(len(xyz), dtype=np.uint32)
    _paint(instance, u, v, cam[:, 2] > 0.5, boxes_2d)
    depth = np.where(instance > 0, cam[:, 2], np.linalg.norm(xyz, axis=1))
    return LabelledFrame(xyz, instance, depth, boxes)


def load_nuscenes(root: Path) -> tuple[np.ndarray, dict, dict]:
    """(sweep (N, 5) float32 x y z intensity ring, calib json, annotations json)."""
    base = root / "nuscenes_mini_sample"
    sweep = np.fromfile(base / NUSCENES_LIDAR, dtype=np.float32).reshape(-1, 5)
    calib = json.loads((base / "calib.json").read_text())
    ann = json.loads((base / "annotations.json").read_text())
    return sweep, calib, ann


def nuscenes_box_labelled(root: Path) -> LabelledFrame:
    """Six cameras; each paints the projected 3D boxes' 2D bounds; the first camera wins."""
    sweep, calib, ann = load_nuscenes(root)
    xyz = sweep[:, :3].astype(np.float64)
    boxes = [
        (np.array(b["bbox_3d"][:3]), np.array(b["bbox_3d"][3:6]), float(b["bbox_3d"][6]))
        for b in ann["instances"]
    ]
    instance = np.zeros(len(xyz), dtype=np.uint32)
    depth = np.linalg.norm(xyz, axis=1)
    for cam in calib["cameras"].values():
        lidar2cam, k = np.array(cam["lidar2cam"]), np.array(cam["cam2img"])
        pc = xyz @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
        uv = pc @ k.T
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = uv[:, 0] / z, uv[:, 1] / z
        visible = (z > 0.5) & (u >= 0) & (u < 1600) & (v >= 0) & (v < 900) & (instance == 0)
        boxes_2d = []
        for idx, (center, size, yaw) in enumerate(boxes):
            corners = box_corners(center, size, yaw) @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
            if np.any(corners[:, 2] < 0.5):
                continue
            px = corners @ k.T
            px = px[:, :2] / px[:, 2:]
            x1, y1 = np.maximum(px.min(axis=0), 0.0)
            x2, y2 = np.minimum(px.max(axis=0), (1600.0, 900.0))
            if x2 > x1 and y2 > y1:
                boxes_2d.append((float(np.linalg.norm(center)), idx + 1, (x1, y1, x2, y2)))
        painted = np.zeros(len(xyz), dtype=np.uint32)
        _paint(painted, u, v, visible, boxes_2d)
        instance[visible] = painted[visible]
        depth[visible] = z[visible]
    return LabelledFrame(xyz, instance, depth, boxes)


def read_ouster(root: Path) -> tuple[np.ndarray, dict]:
    """(PLY map points (N, 3) float32, sensor metadata json) of the Ouster OS-1-128 sample."""
    base = root / "ouster_os1_128"
    raw = (base / "OS-1-128_v2.3.0_1024x10_lb_n3_map-000.ply").read_bytes()
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    points = np.frombuffer(raw[start:], dtype="<f4").reshape(-1, 3)
    meta = json.loads((base / "OS-1-128_v2.3.0_1024x10.json").read_text())
    return points, meta
