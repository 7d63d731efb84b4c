"""DBSCAN backends: numpy against a brute-force reference and against Open3D."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import samfusion.pointcloud.dbscan as dbscan_mod
from samfusion.errors import BackendError, ConfigError
from samfusion.pointcloud.dbscan import dbscan, open3d_available

from ._data import load_kitti

needs_open3d = pytest.mark.skipif(not open3d_available(), reason="open3d is not installed")


def _reference(points, eps, min_points):
    """Brute-force DBSCAN facts: core mask, noise mask, core-point components (as sets)."""
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    near = d2 < eps * eps
    core = near.sum(axis=1) >= min_points
    noise = ~core & ~(near & core[None, :]).any(axis=1)
    comp = -np.ones(len(points), dtype=int)
    for start in np.flatnonzero(core):
        if comp[start] >= 0:
            continue
        stack = [start]
        comp[start] = start
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(near[i] & core):
                if comp[j] < 0:
                    comp[j] = start
                    stack.append(j)
    return core, noise, comp


def _same_partition(a, b):
    """Labelings a and b split the points identically (a bijection between labels)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def _check_against_reference(points, labels, eps, min_points):
    core, noise, comp = _reference(points, eps, min_points)
    assert np.array_equal(labels < 0, noise)
    assert _same_partition(labels[core], comp[core])
    # A border point belongs to a cluster of one of its core neighbours.
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    for i in np.flatnonzero(~core & ~noise):
        neighbours = np.flatnonzero((d2[i] < eps * eps) & core)
        assert labels[i] in set(labels[neighbours].tolist())


@settings(max_examples=60, deadline=None)
@given(
    points=arrays(np.float64, st.tuples(st.integers(1, 60), st.just(3)), elements=st.floats(0.0, 3.0)),
    eps=st.floats(0.2, 1.5),
    min_points=st.integers(1, 6),
)
def test_numpy_backend_matches_brute_force(points, eps, min_points):
    labels = dbscan(points, eps, min_points, "numpy")
    _check_against_reference(points, labels, eps, min_points)
    # Clusters are numbered 0..K-1.
    used = np.unique(labels[labels >= 0])
    assert np.array_equal(used, np.arange(len(used)))


@needs_open3d
@settings(max_examples=30, deadline=None)
@given(
    points=arrays(np.float64, st.tuples(st.integers(1, 60), st.just(3)), elements=st.floats(0.0, 3.0)),
    eps=st.floats(0.2, 1.5),
    min_points=st.integers(1, 6),
)
def test_open3d_backend_matches_brute_force(points, eps, min_points):
    _check_against_reference(points, dbscan(points, eps, min_points, "open3d"), eps, min_points)


def test_two_blobs_and_noise():
    rng = np.random.default_rng(1)
    a = rng.normal([0, 0, 0], 0.1, size=(50, 3))
    b = rng.normal([5, 0, 0], 0.1, size=(40, 3))
    lonely = np.array([[20.0, 20.0, 20.0], [-20.0, 5.0, 0.0]])
    pts = np.vstack([a, b, lonely])
    labels = dbscan(pts, 0.5, 5, "numpy")
    assert (labels[:50] == labels[0]).all() and (labels[50:90] == labels[50]).all()
    assert labels[0] != labels[50] and labels[0] >= 0 and labels[50] >= 0
    assert (labels[90:] == -1).all()
    assert dbscan(np.zeros((0, 3)), 0.5, 5, "numpy").shape == (0,)


@needs_open3d
def test_backends_agree_on_a_real_kitti_region(shared_data):
    scan, *_ = load_kitti(shared_data, "000001")
    xyz = scan[:, :3].astype(np.float64)
    region = xyz[(xyz[:, 0] > 5) & (xyz[:, 0] < 25) & (np.abs(xyz[:, 1]) < 8) & (xyz[:, 2] > -1.3)]
    assert len(region) == 2327
    a = dbscan(region, 0.4, 8, "numpy")
    b = dbscan(region, 0.4, 8, "open3d")
    assert np.array_equal(a < 0, b < 0)
    assert a.max() == b.max() == 13  # 14 clusters, 84 noise points (measured)
    assert int((a < 0).sum()) == 84
    # Border points could go to either touching cluster; on this region none is ambiguous.
    assert _same_partition(a[a >= 0], b[b >= 0])


def test_errors(monkeypatch):
    with pytest.raises(ConfigError, match="eps"):
        dbscan(np.zeros((3, 3)), 0.0, 2)
    with pytest.raises(ConfigError, match="backend"):
        dbscan(np.zeros((3, 3)), 1.0, 2, "sklearn")
    with pytest.raises(ConfigError, match="shape"):
        dbscan(np.zeros((3, 2)), 1.0, 2)
    # Without open3d: 'auto' falls back to numpy and 'open3d' names the missing package.
    monkeypatch.setattr(dbscan_mod, "_OPEN3D", None)
    monkeypatch.setitem(__import__("sys").modules, "open3d", None)
    assert not open3d_available()
    assert dbscan(np.zeros((3, 3)), 1.0, 2, "auto").tolist() == [0, 0, 0]
    with pytest.raises(BackendError, match="open3d"):
        dbscan(np.zeros((3, 3)), 1.0, 2, "open3d")
