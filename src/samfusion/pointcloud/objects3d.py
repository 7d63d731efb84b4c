"""Per-instance 3D objects: point count, centroid and an upright oriented box.

The box is the minimum-area rectangle of the instance's x-y footprint (``cv2.minAreaRect``)
extruded over the z extent of its points, so it is upright in the cloud's frame (z up, as in
every LiDAR frame we handle). Conventions, shared with :func:`points_in_box` and the markers:

* ``center`` is the box's geometric centre (not the bottom centre), in metres;
* ``size`` is ``(length, width, height)`` with ``length >= width``;
* ``yaw`` is the rotation about +z of the length axis from +x, in radians, in ``[-pi/2, pi/2)``.
  A box fitted to points has no heading, so yaw is only defined modulo pi.

Degenerate inputs are handled rather than rejected: one point gives a zero-size box at that
point, two or collinear points a zero-width box along their line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import cv2
import numpy as np

from samfusion.errors import ConversionError

__all__ = [
    "Object3D",
    "compute_objects",
    "fit_box",
    "points_in_box",
    "box_corners",
    "wrap_yaw_half_pi",
]

_UNKNOWN_LABEL = "unknown"


def _frozen_vec(values: np.ndarray | tuple[float, ...], n: int = 3) -> np.ndarray:
    arr = np.array(values, dtype=np.float64).reshape(n)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Object3D:
    """One labelled object in 3D. Arrays are float64 and read-only."""

    instance_id: int
    label: str
    score: float
    point_count: int
    centroid: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: float

    def __post_init__(self) -> None:
        for name in ("centroid", "center", "size"):
            object.__setattr__(self, name, _frozen_vec(getattr(self, name)))

    def corners(self) -> np.ndarray:
        """The box's 8 corners, (8, 3): bottom face first, counter-clockwise from above."""
        return box_corners(self.center, self.size, self.yaw)

    def contains(self, xyz: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Boolean mask of the points of ``xyz`` inside this object's box."""
        return points_in_box(xyz, self.center, self.size, self.yaw, margin=margin)


def wrap_yaw_half_pi(yaw: float) -> float:
    """Wrap an axis angle (defined modulo pi) into ``[-pi/2, pi/2)``."""
    return float((yaw + math.pi / 2.0) % math.pi - math.pi / 2.0)


def _check_xyz(xyz: np.ndarray, name: str = "xyz") -> np.ndarray:
    arr = np.asarray(xyz)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ConversionError(f"{name} must have shape (N, 3), got {arr.shape}")
    return arr


def fit_box(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Upright minimum-area box of a point set: ``(center (3,), size (l, w, h), yaw)``.

    The footprint is fitted on float32 offsets from the mean, so large map coordinates do not
    lose precision in OpenCV.
    """
    pts = _check_xyz(xyz).astype(np.float64, copy=False)
    if len(pts) == 0:
        raise ConversionError("cannot fit a box to zero points")
    z_min, z_max = float(pts[:, 2].min()), float(pts[:, 2].max())
    origin = pts[:, :2].mean(axis=0)
    local = pts[:, :2] - origin
    axis = _footprint_axis(local)
    # Extents along the axis and across it, in float64: exact for the chosen orientation.
    along = local @ axis
    across = local @ np.array([-axis[1], axis[0]])
    a_lo, a_hi, c_lo, c_hi = along.min(), along.max(), across.min(), across.max()
    length, width = a_hi - a_lo, c_hi - c_lo
    mid = origin + axis * 0.5 * (a_lo + a_hi) + np.array([-axis[1], axis[0]]) * 0.5 * (c_lo + c_hi)
    if width > length:
        axis, length, width = np.array([-axis[1], axis[0]]), width, length
    yaw = wrap_yaw_half_pi(math.atan2(axis[1], axis[0])) if length > 0.0 else 0.0
    center = np.array([mid[0], mid[1], 0.5 * (z_min + z_max)])
    return center, np.array([float(length), float(width), z_max - z_min]), yaw


def _footprint_axis(local: np.ndarray) -> np.ndarray:
    """Unit direction of a side of the minimum-area rectangle of x-y points.

    Such a rectangle has a side along an edge of the convex hull (rotating calipers), so every
    hull edge direction is tried at once in float64 and the smallest area wins. The hull comes
    from ``cv2.convexHull``; ``cv2.minAreaRect`` itself is avoided because it returns a wrong
    angle for (nearly) collinear points.
    """
    idx = cv2.convexHull(local.astype(np.float32), returnPoints=False).reshape(-1)
    hull = local[np.sort(idx)] if len(idx) < 3 else local[idx]
    edges = np.roll(hull, -1, axis=0) - hull
    norms = np.hypot(edges[:, 0], edges[:, 1])
    ok = norms > 0.0
    if not ok.any():
        return np.array([1.0, 0.0])
    dirs = edges[ok] / norms[ok, None]
    along = hull @ dirs.T
    across = hull @ np.column_stack([-dirs[:, 1], dirs[:, 0]]).T
    area = np.ptp(along, axis=0) * np.ptp(across, axis=0)
    return dirs[int(np.argmin(area))]


def compute_objects(
    xyz: np.ndarray,
    instance: np.ndarray,
    labels: Mapping[int, str],
    scores: Mapping[int, float],
    *,
    min_points: int = 1,
) -> list[Object3D]:
    """One :class:`Object3D` per non-zero instance id with at least ``min_points`` points.

    Ids missing from ``labels`` / ``scores`` get label ``"unknown"`` and score 0.0. The list is
    sorted by instance id, so ids stay in the order the tracker assigned them.
    """
    pts = _check_xyz(xyz)
    inst = np.asarray(instance)
    if inst.shape != (len(pts),):
        raise ConversionError(f"instance must have shape ({len(pts)},), got {inst.shape}")
    if min_points < 1:
        raise ConversionError(f"min_points must be >= 1, got {min_points}")
    labelled = np.flatnonzero(inst != 0)
    if len(labelled) == 0:
        return []
    order = labelled[np.argsort(inst[labelled], kind="stable")]
    ids, starts, counts = np.unique(inst[order], return_index=True, return_counts=True)
    objects: list[Object3D] = []
    for inst_id, start, count in zip(ids.tolist(), starts.tolist(), counts.tolist()):
        if count < min_points:
            continue
        members = pts[order[start : start + count]].astype(np.float64, copy=False)
        center, size, yaw = fit_box(members)
        objects.append(
            Object3D(
                instance_id=int(inst_id),
                label=str(labels.get(inst_id, _UNKNOWN_LABEL)),
                score=float(scores.get(inst_id, 0.0)),
                point_count=int(count),
                centroid=members.mean(axis=0),
                center=center,
                size=size,
                yaw=yaw,
            )
        )
    return objects


def _box_params(
    center: np.ndarray | tuple[float, ...], size: np.ndarray | tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(center, dtype=np.float64).reshape(-1)
    s = np.asarray(size, dtype=np.float64).reshape(-1)
    if c.shape != (3,) or s.shape != (3,):
        raise ConversionError(f"box center and size must have 3 values, got {c.shape}, {s.shape}")
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise ConversionError(f"box size must be finite and non-negative, got {s.tolist()}")
    return c, s


def points_in_box(
    xyz: np.ndarray,
    center: np.ndarray | tuple[float, ...],
    size: np.ndarray | tuple[float, ...],
    yaw: float,
    *,
    margin: float = 0.0,
) -> np.ndarray:
    """Boolean mask (N,) of the points inside an upright box (faces included).

    ``margin`` grows (or, negative, shrinks) every half-extent, which is how evaluations
    tolerate box annotation noise.
    """
    pts = _check_xyz(xyz)
    c, s = _box_params(center, size)
    half = 0.5 * s + margin
    d = pts.astype(np.float64, copy=False) - c
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    along = cos_y * d[:, 0] + sin_y * d[:, 1]
    across = -sin_y * d[:, 0] + cos_y * d[:, 1]
    return (np.abs(along) <= half[0]) & (np.abs(across) <= half[1]) & (np.abs(d[:, 2]) <= half[2])


def box_corners(
    center: np.ndarray | tuple[float, ...], size: np.ndarray | tuple[float, ...], yaw: float
) -> np.ndarray:
    """The 8 corners (8, 3) of an upright box: bottom face then top face, counter-clockwise."""
    c, s = _box_params(center, size)
    hl, hw, hh = 0.5 * s
    local = np.array(
        [[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]], dtype=np.float64
    )  # counter-clockwise seen from +z
    cos_y, sin_y = math.cos(yaw), math.sin(yaw)
    rot = np.array([[cos_y, -sin_y], [sin_y, cos_y]])
    xy = local @ rot.T + c[:2]
    bottom = np.column_stack([xy, np.full(4, c[2] - hh)])
    top = np.column_stack([xy, np.full(4, c[2] + hh)])
    return np.vstack([bottom, top])
