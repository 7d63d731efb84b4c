"""KITTI object labels (label_2) and their 3D boxes in the velodyne frame.

A label_2 line is ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y [score]``
with the box's *bottom centre* ``(x, y, z)`` in the rectified camera-2 frame (x right, y down,
z forward) and ``rotation_y`` about the camera's y axis (0 = length axis along camera +x).

Conversion to the velodyne frame uses ``T_velo_from_rect = inv(R0_rect * Tr_velo_to_cam)``
(see :func:`velo_from_rect`). The result follows :mod:`samfusion.pointcloud.objects3d`:
geometric centre, size ``(l, w, h)`` and yaw about velodyne +z. The calibration tilts the
velodyne z axis by a fraction of a degree against camera -y, so "upright" differs slightly
between the frames; the yaw mapping is therefore defined through the heading's projection onto
the velodyne x-y plane, and :func:`velo_box_to_kitti` is its exact inverse (round trips agree
to floating-point precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from samfusion.errors import CalibrationError, ConversionError

__all__ = [
    "KittiLabel",
    "parse_label_line",
    "parse_label_file",
    "velo_from_rect",
    "kitti_box_to_velo",
    "velo_box_to_kitti",
]


@dataclass(frozen=True)
class KittiLabel:
    """One label_2 object. ``location`` is the bottom centre in rectified camera-2 coordinates."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    dimensions: tuple[float, float, float]  # h, w, l in metres
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None

    @property
    def has_box(self) -> bool:
        """False for ``DontCare`` regions, whose 3D fields are placeholders (-1, -1000, -10)."""
        return self.type != "DontCare" and self.dimensions[0] > 0.0


def parse_label_line(line: str) -> KittiLabel:
    """Parse one label_2 line (15 values, or 16 with a detection score)."""
    fields = line.split()
    if len(fields) not in (15, 16):
        raise ConversionError(f"KITTI label line needs 15 or 16 fields, got {len(fields)}: {line!r}")
    try:
        v = [float(x) for x in fields[1:]]
    except ValueError as exc:
        raise ConversionError(f"KITTI label line has a non-numeric field: {line!r}") from exc
    return KittiLabel(
        type=fields[0],
        truncated=v[0],
        occluded=int(v[1]),
        alpha=v[2],
        bbox=(v[3], v[4], v[5], v[6]),
        dimensions=(v[7], v[8], v[9]),
        location=(v[10], v[11], v[12]),
        rotation_y=v[13],
        score=v[14] if len(v) == 15 else None,
    )


def parse_label_file(text: str) -> list[KittiLabel]:
    """Parse the text of a label_2 file; blank lines are skipped."""
    return [parse_label_line(line) for line in text.splitlines() if line.strip()]


def _homogeneous(mat: np.ndarray, name: str) -> np.ndarray:
    """A 3x3 rotation, 3x4 or 4x4 transform as a 4x4 matrix."""
    m = np.asarray(mat, dtype=np.float64)
    out = np.eye(4)
    if m.size == 9:
        out[:3, :3] = m.reshape(3, 3)
    elif m.size == 12:
        out[:3, :] = m.reshape(3, 4)
    elif m.size == 16:
        out[:, :] = m.reshape(4, 4)
    else:
        raise CalibrationError(f"{name} must be 3x3, 3x4 or 4x4, got shape {m.shape}")
    return out


def velo_from_rect(r0_rect: np.ndarray, tr_velo_to_cam: np.ndarray) -> np.ndarray:
    """``T_velo_from_rect`` (4x4) from a calib file's ``R0_rect`` (3x3) and ``Tr_velo_to_cam`` (3x4)."""
    r0 = _homogeneous(r0_rect, "R0_rect")
    tr = _homogeneous(tr_velo_to_cam, "Tr_velo_to_cam")
    rect_from_velo = r0 @ tr
    if not np.all(np.isfinite(rect_from_velo)) or abs(np.linalg.det(rect_from_velo[:3, :3])) < 1e-6:
        raise CalibrationError("R0_rect * Tr_velo_to_cam is singular or not finite")
    return np.linalg.inv(rect_from_velo)


def _check_transform(t: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(t, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise CalibrationError(f"{name} must be a finite 4x4 matrix, got shape {m.shape}")
    return m


def kitti_box_to_velo(
    label: KittiLabel, t_velo_from_rect: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """A label's box in the velodyne frame: ``(center (3,), size (l, w, h), yaw)``."""
    if not label.has_box:
        raise ConversionError(f"KITTI label of type {label.type!r} has no 3D box")
    t = _check_transform(t_velo_from_rect, "T_velo_from_rect")
    h, w, length = label.dimensions
    bottom = np.asarray(label.location, dtype=np.float64)
    gravity_rect = bottom - np.array([0.0, h / 2.0, 0.0])  # camera y points down
    center = t[:3, :3] @ gravity_rect + t[:3, 3]
    ry = label.rotation_y
    heading_rect = np.array([math.cos(ry), 0.0, -math.sin(ry)])
    heading_velo = t[:3, :3] @ heading_rect
    yaw = math.atan2(heading_velo[1], heading_velo[0])
    return center, np.array([length, w, h]), yaw


def velo_box_to_kitti(
    center: np.ndarray,
    size: np.ndarray,
    yaw: float,
    t_velo_from_rect: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Inverse of :func:`kitti_box_to_velo`: ``(location (bottom centre), (h, w, l), rotation_y)``.

    ``rotation_y`` is the angle whose camera-frame heading projects onto the velodyne x-y plane
    along ``yaw``: with ``u`` the in-plane normal of that direction, ``u . R (cos, 0, -sin) = 0``
    is linear in (cos, sin) and solved in closed form.
    """
    t = _check_transform(t_velo_from_rect, "T_velo_from_rect")
    length, w, h = (float(x) for x in np.asarray(size, dtype=np.float64).reshape(3))
    rot = t[:3, :3]
    rect_from_velo_rot = np.linalg.inv(rot)
    gravity_rect = rect_from_velo_rot @ (np.asarray(center, dtype=np.float64).reshape(3) - t[:3, 3])
    location = gravity_rect + np.array([0.0, h / 2.0, 0.0])
    normal = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
    p = float(normal @ rot[:, 0])  # coefficient of cos(ry)
    q = float(normal @ rot[:, 2])  # coefficient of -sin(ry)
    ry = math.atan2(p, q)  # cos*p - sin*q = 0  =>  (cos, sin) ~ (q, p)
    heading_velo = rot @ np.array([math.cos(ry), 0.0, -math.sin(ry)])
    if heading_velo[0] * math.cos(yaw) + heading_velo[1] * math.sin(yaw) < 0.0:
        ry = ry - math.pi if ry > 0.0 else ry + math.pi
    return location, np.array([h, w, length]), ry
