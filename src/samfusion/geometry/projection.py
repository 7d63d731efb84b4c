"""Projecting LiDAR clouds into camera images, and the nearest-surface (occlusion) rule.

Two paths share one convention (pixel index = floor of the raw pixel coordinate, valid when
``0 <= u < width`` and ``0 <= v < height`` of the published image, depth = z in the camera
optical frame > ``min_depth``):

* :func:`project_points`: one camera, float64, dense per-point results (reference path).
* :func:`project_to_cameras`: many cameras, float32, sparse results for the points inside
  each image (the labeling hot path). float32 moves pixel coordinates by
  about 1e-4 px, so a point within that distance of an image border may be classed
  differently from the float64 path.

Occlusion: a LiDAR point hidden behind a nearer surface still projects into the image, where
the mask belongs to the nearer object. :func:`nearest_surface_mask` keeps a point only if its
depth is within a tolerance of the minimum depth over its (2r+1) x (2r+1) pixel neighbourhood,
from a z-buffer of all projected points eroded (min-filtered) with a square kernel. The
neighbourhood covers the gaps between sparse LiDAR points on the near surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from samfusion.errors import ConfigError, ConversionError
from samfusion.geometry.camera_model import CameraModel
from samfusion.geometry.transform import RigidTransform

__all__ = [
    "Projection",
    "PixelHits",
    "OcclusionConfig",
    "project_points",
    "project_to_cameras",
    "nearest_surface_mask",
    "nearest_surface",
    "visible_from_pixels",
]


@dataclass(frozen=True, eq=False)
class Projection:
    """Dense per-point projection into one camera (N points).

    ``uv`` float64 raw pixel coordinates (NaN when not in front), ``u``/``v`` int32 pixel
    indices (floor of uv; -1 where not ``valid``), ``depth`` float32 z in the camera frame
    (NaN for non-finite input), ``valid`` in front and inside the image.
    """

    uv: NDArray[np.float64]
    u: NDArray[np.int32]
    v: NDArray[np.int32]
    depth: NDArray[np.float32]
    valid: NDArray[np.bool_]
    width: int
    height: int


@dataclass(frozen=True, eq=False)
class PixelHits:
    """The points of a cloud inside one camera image: cloud ``index``, pixel, depth (sparse)."""

    index: NDArray[np.intp]
    u: NDArray[np.int32]
    v: NDArray[np.int32]
    depth: NDArray[np.float32]
    width: int
    height: int

    @property
    def pixel(self) -> NDArray[np.intp]:
        """Flat pixel index ``v * width + u`` (row-major, as ``image.reshape(-1)``)."""
        return self.v.astype(np.intp) * self.width + self.u


@dataclass(frozen=True)
class OcclusionConfig:
    """Nearest-surface rule: a point is visible if ``depth <= zmin + max(abs, rel * zmin)``.

    ``zmin`` is the minimum depth over the point's (2 radius_px + 1)^2 pixel neighbourhood;
    ``depth_tolerance`` is in metres, ``relative_tolerance`` a fraction of ``zmin`` (LiDAR
    range noise grows with distance). ``enabled=False`` keeps every point in the image.
    """

    enabled: bool = True
    radius_px: int = 2
    depth_tolerance: float = 0.5
    relative_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if int(self.radius_px) != self.radius_px or not 0 <= self.radius_px <= 64:
            raise ConfigError(f"occlusion radius_px must be an integer in [0, 64], got {self.radius_px}")
        if not (self.depth_tolerance >= 0 and np.isfinite(self.depth_tolerance)):
            raise ConfigError(f"occlusion depth_tolerance must be >= 0 metres, got {self.depth_tolerance}")
        if not (self.relative_tolerance >= 0 and np.isfinite(self.relative_tolerance)):
            raise ConfigError(f"occlusion relative_tolerance must be >= 0, got {self.relative_tolerance}")


def _points(xyz: ArrayLike, dtype: type) -> NDArray[np.floating]:
    pts = np.asarray(xyz)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ConversionError(f"points must have shape (N, 3) (extra columns ignored), got {pts.shape}")
    return np.asarray(pts[:, :3], dtype=dtype)


def project_points(
    xyz: ArrayLike, T_cam_from_lidar: RigidTransform, camera: CameraModel, min_depth: float = 0.1
) -> Projection:
    """Project (N, 3) LiDAR points into ``camera`` (float64 reference path)."""
    camera.validate()
    pts = T_cam_from_lidar.apply(_points(xyz, np.float64))
    uv, in_front = camera.project(pts, min_depth=min_depth)
    w, h = camera.image_size
    with np.errstate(invalid="ignore"):
        valid = in_front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    u = np.full(len(pts), -1, dtype=np.int32)
    v = np.full(len(pts), -1, dtype=np.int32)
    u[valid] = np.floor(uv[valid, 0]).astype(np.int32)
    v[valid] = np.floor(uv[valid, 1]).astype(np.int32)
    return Projection(uv, u, v, pts[:, 2].astype(np.float32), valid, w, h)


def project_to_cameras(
    xyz: ArrayLike,
    transforms: Sequence[RigidTransform],
    cameras: Sequence[CameraModel],
    min_depth: float = 0.1,
) -> list[PixelHits]:
    """Project one cloud into several cameras (float32); one :class:`PixelHits` each.

    Per camera one ``cv2.transform`` with a 3x4 matrix (K folded into [R | t] for undistorted
    cameras, so each costs two divisions and five comparisons over the cloud, written into
    reused buffers, before the points inside the image are gathered). A (3C x 3) numpy
    matmul was measured 2-6x slower here: OpenBLAS threads a K=3 product and stalls when the
    cores are shared.
    """
    if len(transforms) != len(cameras):
        raise ConfigError(f"got {len(transforms)} transforms for {len(cameras)} cameras")
    pts = np.ascontiguousarray(_points(xyz, np.float32))
    n = len(pts)
    src = pts.reshape(n, 1, 3)
    ubuf, vbuf = np.empty(n, np.float32), np.empty(n, np.float32)
    mask, tmp = np.empty(n, bool), np.empty(n, bool)
    out: list[PixelHits] = []
    for cam, tf in zip(cameras, transforms):
        cam.validate()
        w, h = cam.image_size
        m = tf.matrix[:3]
        if not cam.is_distorted:
            m = cam.image_K @ m
        hom = cv2.transform(src, m.astype(np.float32)).reshape(n, 3) if n else np.zeros((0, 3), np.float32)
        x, y, z = hom[:, 0], hom[:, 1], hom[:, 2]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if cam.is_distorted:
                idx = np.flatnonzero(z > min_depth)
                zs = z[idx]
                xd, yd, ok = cam.distort_normalized(x[idx] / zs, y[idx] / zs)
                uf, vf = cam.normalized_to_pixels(xd, yd)
                keep = np.flatnonzero(ok & (uf >= 0) & (uf < w) & (vf >= 0) & (vf < h))
                idx, zs, uf, vf = idx[keep], zs[keep], uf[keep], vf[keep]
            else:
                np.divide(x, z, out=ubuf)
                np.divide(y, z, out=vbuf)
                np.greater(z, min_depth, out=mask)
                for arr, op, bound in (
                    (ubuf, np.greater_equal, 0), (ubuf, np.less, w), (vbuf, np.greater_equal, 0), (vbuf, np.less, h)
                ):
                    op(arr, bound, out=tmp)
                    mask &= tmp
                idx = np.flatnonzero(mask)
                zs, uf, vf = z[idx], ubuf[idx], vbuf[idx]
        out.append(
            PixelHits(
                idx,
                uf.astype(np.int32),  # truncation == floor: all values are >= 0 here
                vf.astype(np.int32),
                zs.astype(np.float32, copy=False),
                w,
                h,
            )
        )
    return out


def nearest_surface(
    u: NDArray[np.integer],
    v: NDArray[np.integer],
    depth: NDArray[np.floating],
    width: int,
    height: int,
    *,
    radius_px: int = 2,
    depth_tolerance: float = 0.5,
    relative_tolerance: float = 0.0,
) -> NDArray[np.bool_]:
    """Occlusion test for points already inside the image (pixel indices and depths)."""
    if len(depth) == 0:
        return np.zeros(0, dtype=bool)
    u = np.asarray(u, dtype=np.intp)
    v = np.asarray(v, dtype=np.intp)
    if u.min() < 0 or v.min() < 0 or u.max() >= width or v.max() >= height:
        raise ConversionError(f"pixel indices fall outside the {width}x{height} image")
    return visible_from_pixels(
        v * width + u, depth, width, radius_px=radius_px, depth_tolerance=depth_tolerance,
        relative_tolerance=relative_tolerance,
    )


def visible_from_pixels(
    pixel: NDArray[np.integer],
    depth: NDArray[np.floating],
    width: int,
    *,
    radius_px: int = 2,
    depth_tolerance: float = 0.5,
    relative_tolerance: float = 0.0,
) -> NDArray[np.bool_]:
    """:func:`nearest_surface` on flat pixel indices ``v * width + u`` (unchecked; hot path).

    The z-buffer spans only the image rows between the first and last point (rows outside
    are empty, so the erosion would see +inf there anyway).
    """
    if len(depth) == 0:
        return np.zeros(0, dtype=bool)
    d = np.asarray(depth, dtype=np.float32)
    first_row = int(pixel.min()) // width
    rows = int(pixel.max()) // width - first_row + 1
    local = pixel - first_row * width if first_row else pixel
    zbuf = np.full(rows * width, np.inf, dtype=np.float32)
    np.minimum.at(zbuf, local, d)
    if radius_px > 0:
        kernel = np.ones((2 * radius_px + 1, 2 * radius_px + 1), dtype=np.uint8)
        zbuf = cv2.erode(
            zbuf.reshape(rows, width), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=float(np.inf)
        ).reshape(-1)
    zmin = zbuf[local]
    if relative_tolerance > 0:
        return d <= zmin + np.maximum(np.float32(depth_tolerance), zmin * np.float32(relative_tolerance))
    return d <= zmin + np.float32(depth_tolerance)


def nearest_surface_mask(
    proj: Projection,
    width: int,
    height: int,
    radius_px: int = 2,
    depth_tolerance: float = 0.5,
    relative_tolerance: float = 0.0,
) -> NDArray[np.bool_]:
    """(N,) bool: valid points that are the nearest surface in their pixel neighbourhood."""
    OcclusionConfig(True, radius_px, depth_tolerance, relative_tolerance)  # validates
    idx = np.flatnonzero(proj.valid)
    mask = np.zeros(len(proj.valid), dtype=bool)
    mask[idx] = nearest_surface(
        proj.u[idx], proj.v[idx], proj.depth[idx], width, height,
        radius_px=radius_px, depth_tolerance=depth_tolerance, relative_tolerance=relative_tolerance,
    )
    return mask
