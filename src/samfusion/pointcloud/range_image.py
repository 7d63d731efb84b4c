"""LiDAR-only segmentation geometry: spinning-LiDAR clouds as range / intensity images.

A cloud is rendered into an H x W image (rows = beams, columns = azimuth bins) so the 2D
segmentation backends can run on it, and the resulting id image is mapped back to every point.

* **Rows.** From the ``ring`` field when given (and ``use_ring_field``): ``ring_order``
  ``"bottom_up"`` (Velodyne drivers, nuScenes: ring 0 is the lowest beam) puts ring 0 on the
  bottom row, ``"top_down"`` (Ouster channels) on the top row. Otherwise from each point's
  elevation: the nearest of ``beam_altitudes_deg`` (rows = beams sorted from highest down),
  or, without beam angles, H beams spread evenly from ``fov_up_deg`` (row 0) to
  ``fov_down_deg`` (row H-1); points beyond the field of view go to the edge rows.
  Elevation is measured from the beam origin: ``atan2(z - origin_z_m, rho - beam_origin_offset_m)``
  (Ouster metadata gives both; they are 0 for Velodyne).
* **Columns.** ``col = floor((pi - azimuth) / 2pi * W)``: forward (+x) is the middle column, left
  (+y) is left of it, and the seam (columns 0 / W-1) is straight behind.
* **Z-buffer.** Of the points in one cell, the nearest wins (ties: the lower point index);
  ``index`` holds its point index, -1 for empty cells, whose range and intensity are 0.
  Points outside ``[min_range_m, max_range_m]`` take no cell (row and col -1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

import numpy as np

from samfusion.errors import ConfigError, ConversionError, PromptError

__all__ = [
    "RingOrder",
    "RangeImageConfig",
    "RangeImage",
    "render_range_image",
    "to_rgb",
    "masks_to_points",
    "project_to_range_image",
    "project_box_to_range_image",
    "estimate_beam_altitudes",
]


class RingOrder(str, Enum):
    BOTTOM_UP = "bottom_up"  # ring 0 = lowest beam (Velodyne, nuScenes)
    TOP_DOWN = "top_down"  # ring 0 = highest beam (Ouster)


@dataclass(frozen=True, kw_only=True)
class RangeImageConfig:
    """Image geometry and the label back-mapping tolerance (see the module docstring)."""

    height: int = 64
    width: int = 2048
    fov_up_deg: float = 2.0
    fov_down_deg: float = -24.8
    beam_altitudes_deg: tuple[float, ...] | None = None
    use_ring_field: bool = True
    ring_order: RingOrder = RingOrder.BOTTOM_UP
    min_range_m: float = 0.5
    max_range_m: float = math.inf
    beam_origin_offset_m: float = 0.0
    origin_z_m: float = 0.0
    label_tolerance_m: float = 0.3  # masks_to_points: absolute range tolerance
    label_tolerance_rel: float = 0.02  # ... plus this fraction of the winner's range

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "ring_order", RingOrder(self.ring_order))
        except ValueError as exc:
            raise ConfigError(f"ring_order must be 'bottom_up' or 'top_down', got {self.ring_order!r}") from exc
        if self.height < 1 or self.width < 1:
            raise ConfigError(f"range image size must be positive, got {self.height}x{self.width}")
        if self.beam_altitudes_deg is not None:
            alt = tuple(float(a) for a in self.beam_altitudes_deg)
            if len(alt) != self.height:
                raise ConfigError(f"{len(alt)} beam altitudes given for height {self.height}")
            if not all(math.isfinite(a) for a in alt) or len(set(alt)) != len(alt):
                raise ConfigError("beam altitudes must be finite and distinct")
            object.__setattr__(self, "beam_altitudes_deg", alt)
        elif not self.fov_up_deg > self.fov_down_deg:
            raise ConfigError(f"fov_up_deg ({self.fov_up_deg}) must exceed fov_down_deg ({self.fov_down_deg})")
        if not 0.0 <= self.min_range_m < self.max_range_m:
            raise ConfigError(f"need 0 <= min_range_m < max_range_m, got {self.min_range_m}, {self.max_range_m}")
        if self.label_tolerance_m < 0.0 or self.label_tolerance_rel < 0.0:
            raise ConfigError("label tolerances must be >= 0")

    @classmethod
    def velodyne_hdl64e(cls, width: int = 2048, **kw: Any) -> "RangeImageConfig":
        """KITTI's HDL-64E: 64 beams from +2.0 to -24.8 degrees."""
        return cls(height=64, width=width, fov_up_deg=2.0, fov_down_deg=-24.8, **kw)

    @classmethod
    def velodyne_hdl32e(cls, width: int = 1024, **kw: Any) -> "RangeImageConfig":
        """nuScenes' HDL-32E: 32 beams from +10.67 to -30.67 degrees, ring 0 lowest."""
        return cls(height=32, width=width, fov_up_deg=10.67, fov_down_deg=-30.67, **kw)

    @classmethod
    def from_ouster_metadata(cls, meta: Mapping[str, Any], **kw: Any) -> "RangeImageConfig":
        """From an Ouster sensor metadata json (points in the *sensor* frame, as the SDK writes)."""
        try:
            alt = tuple(float(a) for a in meta["beam_altitude_angles"])
            mode = str(meta.get("lidar_mode", ""))
            width = int(meta.get("data_format", {}).get("columns_per_frame") or mode.split("x")[0])
            offset = float(meta.get("lidar_origin_to_beam_origin_mm", 0.0)) / 1000.0
            lidar_to_sensor = meta.get("lidar_to_sensor_transform")
            origin_z = float(lidar_to_sensor[11]) / 1000.0 if lidar_to_sensor else 0.0
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"not usable Ouster metadata: {exc!r}") from exc
        values: dict[str, Any] = dict(
            height=len(alt), width=width, beam_altitudes_deg=alt,
            ring_order=RingOrder.TOP_DOWN, beam_origin_offset_m=offset, origin_z_m=origin_z,
        )
        values.update(kw)
        return cls(**values)


@dataclass(frozen=True, eq=False)
class RangeImage:
    """A rendered cloud: per-cell images (H, W) and each point's cell (N,)."""

    config: RangeImageConfig
    range: np.ndarray  # float32 metres, 0 where empty
    intensity: np.ndarray  # float32, 0 where empty (all 0 without an intensity field)
    index: np.ndarray  # int64 winning point index, -1 where empty
    row: np.ndarray  # int64 per point, -1 when the point takes no cell
    col: np.ndarray  # int64 per point, -1 when the point takes no cell
    point_range: np.ndarray  # float32 per point
    has_intensity: bool = False

    @property
    def filled(self) -> np.ndarray:
        return self.index >= 0

    @property
    def valid(self) -> np.ndarray:
        return self.row >= 0


def _xyz(points: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ConversionError(f"{name} must have shape (N, 3), got {pts.shape}")
    return pts


def _rows_from_elevation(pts: np.ndarray, config: RangeImageConfig) -> np.ndarray:
    x, y, z = (pts[:, i].astype(np.float64) for i in range(3))
    rho = np.hypot(x, y) - config.beam_origin_offset_m
    elev = np.degrees(np.arctan2(z - config.origin_z_m, rho))
    if config.beam_altitudes_deg is not None:
        desc = -np.sort(-np.asarray(config.beam_altitudes_deg))  # row 0 = highest beam
        mids = 0.5 * (desc[1:] + desc[:-1])
        return np.searchsorted(-mids, -elev).astype(np.int64)
    span = config.fov_up_deg - config.fov_down_deg
    rows = np.rint((config.fov_up_deg - elev) / span * (config.height - 1))
    return np.clip(rows, 0, config.height - 1).astype(np.int64)


def _cols(pts: np.ndarray, width: int) -> np.ndarray:
    azimuth = np.arctan2(pts[:, 1].astype(np.float64), pts[:, 0].astype(np.float64))
    return (np.floor((math.pi - azimuth) / (2.0 * math.pi) * width).astype(np.int64)) % width


def _rows_from_ring(ring: np.ndarray, n: int, config: RangeImageConfig) -> np.ndarray:
    r = np.asarray(ring)
    if r.shape != (n,):
        raise ConversionError(f"ring must have shape ({n},), got {r.shape}")
    rows = r.astype(np.int64)
    if not np.issubdtype(r.dtype, np.integer) and np.any(rows != r):
        raise ConversionError("ring values must be whole numbers")
    if n and (rows.min() < 0 or rows.max() >= config.height):
        raise ConfigError(
            f"ring values span {rows.min()}..{rows.max()} but the range image has "
            f"{config.height} rows; set height to the sensor's beam count"
        )
    return rows if config.ring_order is RingOrder.TOP_DOWN else config.height - 1 - rows


def render_range_image(
    xyz: np.ndarray,
    intensity: np.ndarray | None = None,
    ring: np.ndarray | None = None,
    config: RangeImageConfig | None = None,
) -> RangeImage:
    """Render an (N, 3) cloud in the sensor frame (z up) into a :class:`RangeImage`."""
    cfg = config if config is not None else RangeImageConfig()
    pts = _xyz(xyz, "xyz")
    n = len(pts)
    rng = np.sqrt(np.einsum("ij,ij->i", pts, pts, dtype=np.float64)).astype(np.float32)
    valid = np.isfinite(rng) & (rng >= cfg.min_range_m) & (rng <= cfg.max_range_m)
    ids = np.flatnonzero(valid)
    every = len(ids) == n  # skip the gathers when every point is in range
    sel = slice(None) if every else ids
    placed = pts if every else pts[ids]
    rows = np.full(n, -1, dtype=np.int64)
    cols = np.full(n, -1, dtype=np.int64)
    if ring is not None and cfg.use_ring_field:
        rows[sel] = _rows_from_ring(ring, n, cfg)[sel]
    else:
        rows[sel] = _rows_from_elevation(placed, cfg)
    cols[sel] = _cols(placed, cfg.width)
    inten = None
    if intensity is not None:
        inten = np.asarray(intensity, dtype=np.float32)
        if inten.shape != (n,):
            raise ConversionError(f"intensity must have shape ({n},), got {inten.shape}")

    h, w = cfg.height, cfg.width
    cell = rows[sel] * w + cols[sel]
    ranges = rng[sel]
    # Z-buffer in O(N) without sorting: the nearest range per cell, then the lowest index
    # among the points at exactly that range.
    nearest = np.full(h * w, np.inf, dtype=np.float32)
    np.minimum.at(nearest, cell, ranges)
    at_nearest = ranges == nearest[cell]
    index = np.full(h * w, n, dtype=np.int64)
    np.minimum.at(index, cell[at_nearest], ids[at_nearest])
    index[index == n] = -1
    index = index.reshape(h, w)

    filled = index >= 0
    range_img = np.zeros((h, w), dtype=np.float32)
    range_img[filled] = rng[index[filled]]
    inten_img = np.zeros((h, w), dtype=np.float32)
    if inten is not None:
        inten_img[filled] = inten[index[filled]]
    return RangeImage(
        config=cfg, range=range_img, intensity=inten_img, index=index,
        row=rows, col=cols, point_range=rng, has_intensity=inten is not None,
    )


def _normalise(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        return np.full(values.shape, 255.0, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255.0


def to_rgb(image: RangeImage) -> np.ndarray:
    """An H x W x 3 uint8 picture of a range image for the 2D backends.

    Red is intensity, stretched so its 1st..99th percentile over filled cells spans 0..255
    (retro-reflectors do not wash the rest out); green and blue are *nearness*,
    ``1 - log(r / r_min) / log(r_max / r_min)`` over the filled cells' range, so near surfaces
    are bright and distant ones dim while depth edges stay visible at every distance. Without
    intensity, red is nearness too (a grey image). Empty cells are black.
    """
    filled = image.filled
    out = np.zeros(image.range.shape + (3,), dtype=np.uint8)
    if not filled.any():
        return out
    r = image.range[filled].astype(np.float64)
    r_min = max(float(r.min()), 1e-3)
    r_max = float(r.max())
    log_r = np.log(np.maximum(r, r_min))
    near = 255.0 - _normalise(log_r, math.log(r_min), math.log(max(r_max, r_min)))
    if r_max <= r_min:
        near = np.full(r.shape, 255.0)
    if image.has_intensity:
        inten = image.intensity[filled]
        lo, hi = np.percentile(inten, [1.0, 99.0])
        red = _normalise(inten, float(lo), float(hi))
    else:
        red = near
    out[filled, 0] = np.rint(red).astype(np.uint8)
    out[filled, 1] = np.rint(near).astype(np.uint8)
    out[filled, 2] = out[filled, 1]
    return out


def masks_to_points(
    image: RangeImage,
    id_image: np.ndarray,
    *,
    tolerance_m: float | None = None,
    tolerance_rel: float | None = None,
) -> np.ndarray:
    """Instance id (N,) uint32 of every point from an (H, W) id image of the range image.

    A cell's winner (nearest point) always takes the cell's id. A point that lost the z-buffer
    in its cell takes it only if its range is within ``tolerance_m + tolerance_rel * r_winner``
    of the winner's (same surface, e.g. several returns per cell), else 0: a mask drawn on a
    foreground object must not label the background hidden behind it. Points that took no cell
    get 0. Tolerances default to the image's config.
    """
    cfg = image.config
    ids = np.asarray(id_image)
    if ids.shape != image.index.shape:
        raise ConversionError(f"id image has shape {ids.shape}, range image {image.index.shape}")
    if ids.size and (not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0):
        raise ConversionError("id image must hold non-negative integer ids")
    tol_m = cfg.label_tolerance_m if tolerance_m is None else tolerance_m
    tol_rel = cfg.label_tolerance_rel if tolerance_rel is None else tolerance_rel
    out = np.zeros(len(image.row), dtype=np.uint32)
    pts = np.flatnonzero(image.valid)
    r, c = image.row[pts], image.col[pts]
    winner_range = image.range[r, c].astype(np.float64)
    gap = np.abs(image.point_range[pts].astype(np.float64) - winner_range)
    same = (image.index[r, c] == pts) | (gap <= tol_m + tol_rel * winner_range)
    out[pts[same]] = ids[r[same], c[same]]
    return out


def project_to_range_image(
    points_3d: np.ndarray, config: RangeImageConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) int64 of 3D points (e.g. 3D prompts) in the sensor frame.

    Rows always come from elevation (fov or beam altitudes), also when images are rendered from
    a ring field; a point at the origin or with a non-finite coordinate gets (-1, -1).
    """
    pts = _xyz(points_3d, "points_3d").astype(np.float64)
    ok = np.all(np.isfinite(pts), axis=1) & (np.abs(pts).sum(axis=1) > 0.0)
    safe = np.where(ok[:, None], pts, 1.0)
    rows = np.where(ok, _rows_from_elevation(safe, config), -1)
    cols = np.where(ok, _cols(safe, config.width), -1)
    return rows, cols


def project_box_to_range_image(
    center: np.ndarray | tuple[float, ...],
    size: np.ndarray | tuple[float, ...],
    yaw: float,
    config: RangeImageConfig,
    *,
    samples_per_edge: int = 32,
) -> tuple[int, int, int, int]:
    """Pixel box (x_min, y_min, x_max, y_max), max exclusive, of an upright 3D box prompt.

    The box's 12 edges are sampled (a face's elevation extreme lies on its border), columns are
    unwrapped around the centre's column, and a box crossing the seam behind the sensor is
    clipped to the image on its centre's side.
    """
    from samfusion.pointcloud.objects3d import box_corners  # noqa: PLC0415 - avoid a cycle

    corners = box_corners(center, size, yaw)
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4)] + [(i, i + 4) for i in range(4)]
    t = np.linspace(0.0, 1.0, samples_per_edge)[:, None]
    samples = np.vstack([corners[a] + t * (corners[b] - corners[a]) for a, b in edges])
    c = np.asarray(center, dtype=np.float64).reshape(3)
    if _contains_origin_xy(corners):
        raise PromptError("a 3D box around the sensor has no extent in the range image")
    rows, cols = project_to_range_image(samples, config)
    _, (c_col,) = project_to_range_image(c[None, :], config)
    w = config.width
    unwrapped = c_col + (cols - c_col + w // 2) % w - w // 2
    x_min = int(np.clip(unwrapped.min(), 0, w))
    x_max = int(np.clip(unwrapped.max() + 1, 0, w))
    y_min = int(np.clip(rows.min(), 0, config.height))
    y_max = int(np.clip(rows.max() + 1, 0, config.height))
    return x_min, y_min, x_max, y_max


def _contains_origin_xy(corners: np.ndarray) -> bool:
    """True when the box footprint (first four corners, counter-clockwise) contains (0, 0)."""
    quad = corners[:4, :2]
    nxt = np.roll(quad, -1, axis=0)
    cross = (nxt[:, 0] - quad[:, 0]) * (0.0 - quad[:, 1]) - (nxt[:, 1] - quad[:, 1]) * (0.0 - quad[:, 0])
    return bool(np.all(cross >= 0.0))


def estimate_beam_altitudes(
    xyz: np.ndarray,
    n_beams: int,
    *,
    min_range_m: float = 5.0,
    max_iterations: int = 50,
    beam_origin_offset_m: float = 0.0,
    origin_z_m: float = 0.0,
) -> tuple[float, ...]:
    """Beam altitudes (degrees, highest first) of a scan without a ring field, by 1D k-means.

    For sensors whose beams are not evenly spread (KITTI's HDL-64E has two laser blocks with
    different spacing), rows from these altitudes leave no empty rows where a linear fov does.
    Elevations of points beyond ``min_range_m`` (where laser origin offsets matter least) are
    clustered, starting from their quantiles; a beam that loses all its points keeps its start.
    """
    pts = _xyz(xyz, "xyz").astype(np.float64)
    if n_beams < 1:
        raise ConfigError(f"n_beams must be >= 1, got {n_beams}")
    far = pts[np.linalg.norm(pts, axis=1) >= min_range_m]
    if len(far) < n_beams:
        raise ConversionError(f"{len(far)} points beyond {min_range_m} m cannot separate {n_beams} beams")
    rho = np.hypot(far[:, 0], far[:, 1]) - beam_origin_offset_m
    elev = np.sort(np.degrees(np.arctan2(far[:, 2] - origin_z_m, rho)))
    centres = np.quantile(elev, (np.arange(n_beams) + 0.5) / n_beams)
    for _ in range(max_iterations):
        beam = np.searchsorted(0.5 * (centres[1:] + centres[:-1]), elev)
        counts = np.bincount(beam, minlength=n_beams)
        sums = np.bincount(beam, weights=elev, minlength=n_beams)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        done = np.allclose(updated, centres, atol=1e-6, rtol=0.0)
        centres = np.sort(updated)
        if done:
            break
    return tuple(float(a) for a in centres[::-1])
