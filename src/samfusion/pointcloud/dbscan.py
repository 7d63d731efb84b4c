"""DBSCAN on point clouds: Open3D's ``cluster_dbscan`` or a vectorised numpy implementation.

Both follow the same definition (Open3D's): a point is *core* when at least ``min_points``
points, itself included, lie strictly closer than ``eps``; clusters are the connected
components of core points linked by such neighbourhoods; a non-core point within ``eps`` of a
core point is a *border* point of that cluster; everything else is noise (label -1).
Core points and noise come out identical from both backends (cluster numbers aside). A border
point that touches two clusters is given to the lowest-numbered one here, and to whichever
cluster reaches it first in Open3D.

The numpy path hashes points into a grid of ``eps``-sized cells, gathers candidate pairs from
the 27 neighbouring cells and joins core points with a vectorised union-find (hooking roots to
the smaller root, then pointer jumping), so it needs neither Open3D nor SciPy.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from samfusion.errors import BackendError, ConfigError

__all__ = ["ClusterBackend", "dbscan", "open3d_available"]

_OPEN3D: Any = None


class ClusterBackend(str, Enum):
    AUTO = "auto"  # Open3D when importable, else numpy
    OPEN3D = "open3d"
    NUMPY = "numpy"


def _import_open3d() -> Any:
    global _OPEN3D
    if _OPEN3D is None:
        try:
            import open3d  # noqa: PLC0415 - heavy, optional, imported on first use
        except (ImportError, OSError) as exc:
            raise BackendError(
                "cleanup backend 'open3d' needs the open3d package (pip install open3d; on "
                f"Debian/Ubuntu it also needs libusb-1.0-0): {exc}; or use backend 'numpy'"
            ) from exc
        _OPEN3D = open3d
    return _OPEN3D


def open3d_available() -> bool:
    """True when Open3D imports (it is optional)."""
    try:
        _import_open3d()
    except BackendError:
        return False
    return True


def dbscan(
    points: np.ndarray,
    eps: float,
    min_points: int,
    backend: ClusterBackend | str = ClusterBackend.AUTO,
) -> np.ndarray:
    """Cluster labels (N,) int64 of ``points`` (N, 3): 0, 1, ... per cluster, -1 for noise."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ConfigError(f"dbscan points must have shape (N, 3), got {pts.shape}")
    if not eps > 0.0 or min_points < 1:
        raise ConfigError(f"dbscan needs eps > 0 and min_points >= 1, got {eps}, {min_points}")
    try:
        which = ClusterBackend(backend)
    except ValueError as exc:
        raise ConfigError(f"unknown cluster backend {backend!r}") from exc
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    if which is ClusterBackend.AUTO:
        which = ClusterBackend.OPEN3D if open3d_available() else ClusterBackend.NUMPY
    if which is ClusterBackend.OPEN3D:
        o3d = _import_open3d()
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        return np.asarray(cloud.cluster_dbscan(eps, min_points, False), dtype=np.int64)
    return _dbscan_numpy(pts, eps, min_points)


def _neighbour_pairs(pts: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (i, j), i != j, with |p_i - p_j| < eps, via an eps-sized grid."""
    cells = np.floor((pts - pts.min(axis=0)) / eps).astype(np.int64) + 1
    dims = cells.max(axis=0) + 2
    code = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(code, kind="stable")
    uniq, starts, counts = np.unique(code[order], return_index=True, return_counts=True)
    eps2 = eps * eps
    src_parts: list[np.ndarray] = []
    dst_parts: list[np.ndarray] = []
    point_ids = np.arange(len(pts))
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                target = code + (dx * dims[1] + dy) * dims[2] + dz
                slot = np.searchsorted(uniq, target)
                slot_c = np.minimum(slot, len(uniq) - 1)
                hit = uniq[slot_c] == target
                if not hit.any():
                    continue
                src_pts = point_ids[hit]
                n_each = counts[slot_c[hit]]
                src = np.repeat(src_pts, n_each)
                offsets = np.arange(len(src)) - np.repeat(np.cumsum(n_each) - n_each, n_each)
                dst = order[np.repeat(starts[slot_c[hit]], n_each) + offsets]
                diff = pts[src] - pts[dst]
                close = np.einsum("ij,ij->i", diff, diff) < eps2
                close &= src != dst
                src_parts.append(src[close])
                dst_parts.append(dst[close])
    if not src_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(src_parts), np.concatenate(dst_parts)


def _components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Root (smallest member index) of each node's connected component."""
    parent = np.arange(n)
    while True:
        a, b = parent[src], parent[dst]
        differ = a != b
        if not differ.any():
            return parent
        lo, hi = np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])
        np.minimum.at(parent, hi, lo)
        while True:  # pointer jumping until every node points at a root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def _dbscan_numpy(pts: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    n = len(pts)
    src, dst = _neighbour_pairs(pts, eps)
    core = (np.bincount(src, minlength=n) + 1) >= min_points
    labels = np.full(n, -1, dtype=np.int64)
    if not core.any():
        return labels
    both = core[src] & core[dst]
    root = _components(n, src[both], dst[both])
    core_idx = np.flatnonzero(core)
    # Number clusters 0, 1, ... in order of their smallest core point.
    _, dense = np.unique(root[core_idx], return_inverse=True)
    labels[core_idx] = dense
    border = ~core[src] & core[dst]
    if border.any():
        best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(best, src[border], labels[dst[border]])
        got = np.flatnonzero(best != np.iinfo(np.int64).max)
        labels[got] = best[got]
    return labels
