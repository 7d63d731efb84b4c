"""project_points / project_to_cameras / nearest-surface occlusion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samfusion.errors import ConfigError, ConversionError
from samfusion.geometry import (
    CameraModel,
    OcclusionConfig,
    RigidTransform,
    nearest_surface,
    nearest_surface_mask,
    project_points,
    project_to_cameras,
)


def _assert_paths_agree(xyz, tf, cam) -> int:
    """float32 hot path == float64 reference, except pixel indices of points on a border."""
    ref = project_points(xyz, tf, cam)
    hit = project_to_cameras(xyz, [tf], [cam])[0]
    np.testing.assert_array_equal(hit.index, np.flatnonzero(ref.valid))
    for axis, got in ((0, hit.u), (1, hit.v)):
        diff = got - (ref.u if axis == 0 else ref.v)[hit.index]
        assert np.abs(diff).max(initial=0) <= 1
        coord = ref.uv[hit.index[diff != 0], axis]
        assert np.all(np.abs(coord - np.round(coord)) < 1e-3)  # only float32 rounding at a border
    np.testing.assert_allclose(hit.depth, ref.depth[hit.index], rtol=1e-6)
    return len(hit.index)


def test_hot_path_matches_reference_on_real_data(kitti_frames, nuscenes_rigs, nuscenes_points, opencalib_rig, opencalib_points) -> None:
    frame = kitti_frames["000001"]
    assert _assert_paths_agree(frame.points, frame.calib.T_cam_from_velo, frame.calib.camera_model) == 18630
    counts = {n: _assert_paths_agree(nuscenes_points, r.T_cam_from_lidar, r.camera_model) for n, r in nuscenes_rigs.items()}
    assert counts == {
        "CAM_FRONT": 3067, "CAM_FRONT_RIGHT": 3079, "CAM_FRONT_LEFT": 3704,
        "CAM_BACK": 4826, "CAM_BACK_LEFT": 4097, "CAM_BACK_RIGHT": 3379,
    }
    # distorted camera: the float32 path runs the distortion polynomial on the subset
    assert _assert_paths_agree(opencalib_points, opencalib_rig.T_cam_from_lidar, opencalib_rig.camera_model) == 9962


@st.composite
def extrinsic(draw: st.DrawFn) -> RigidTransform:
    rpy = [draw(st.floats(-0.3, 0.3)) for _ in range(3)]
    xyz = [draw(st.floats(-2.0, 2.0)) for _ in range(3)]
    return RigidTransform.from_translation_rpy(xyz, rpy)


@settings(max_examples=60, deadline=None)
@given(
    extrinsic(),
    st.lists(st.tuples(st.floats(-20, 20), st.floats(-10, 10), st.floats(1.0, 60.0)), min_size=1, max_size=50),
    st.lists(st.floats(-0.2, 0.2), min_size=5, max_size=5),
)
def test_random_points_match_cv2_project_points(tf: RigidTransform, rows: list, d5: list[float]) -> None:
    """The full extrinsic + intrinsic path equals cv2.projectPoints with rvec/tvec."""
    d = np.array(d5)
    d[2:4] *= 0.05
    cam = CameraModel(1280, 720, [[900, 0, 640], [0, 880, 360], [0, 0, 1]], d, "plumb_bob")
    xyz = np.array(rows)
    proj = project_points(xyz, tf, cam)
    _, q = tf.to_translation_quaternion()  # angle-axis from the quaternion (cv2.Rodrigues of a
    norm = np.linalg.norm(q[:3])  # matrix is imprecise for tiny angles)
    rvec = q[:3] / norm * 2 * np.arctan2(norm, q[3]) if norm > 0 else np.zeros(3)
    ref, _ = cv2.projectPoints(xyz.reshape(-1, 1, 3), rvec, tf.translation, cam.K, d)
    ref = ref.reshape(-1, 2)
    front = np.isfinite(proj.uv[:, 0])
    np.testing.assert_allclose(proj.uv[front], ref[front], rtol=1e-9, atol=1e-6)
    inside = front & (ref[:, 0] >= 0) & (ref[:, 0] < 1280) & (ref[:, 1] >= 0) & (ref[:, 1] < 720)
    np.testing.assert_array_equal(proj.valid, inside)


def test_non_finite_and_extra_columns() -> None:
    cam = CameraModel.pinhole(640, 480, 500, 500, 320, 240)
    pts = np.array([[0.0, 0.0, 5.0, 0.7], [np.nan, 0.0, 5.0, 0.1], [0.0, np.inf, 5.0, 0.1], [1.0, 1.0, 5.0, 0.2]])
    proj = project_points(pts, RigidTransform.identity(), cam)
    assert proj.valid.tolist() == [True, False, False, True]
    assert proj.u.tolist() == [320, -1, -1, 420] and proj.v.tolist() == [240, -1, -1, 340]
    hit = project_to_cameras(pts, [RigidTransform.identity()], [cam])[0]
    assert hit.index.tolist() == [0, 3]
    with pytest.raises(ConversionError, match=r"shape \(N, 3\)"):
        project_points(np.zeros((4, 2)), RigidTransform.identity(), cam)
    with pytest.raises(ConfigError, match="2 transforms for 1 cameras"):
        project_to_cameras(pts, [RigidTransform.identity()] * 2, [cam])
    empty = project_to_cameras(np.zeros((0, 3)), [RigidTransform.identity()], [cam])[0]
    assert empty.index.size == 0


def test_nearest_surface_tolerances_and_radius() -> None:
    u = np.array([10, 10, 10, 11, 14])
    v = np.array([5, 5, 5, 5, 5])
    d = np.array([10.0, 10.4, 10.6, 30.0, 30.0], dtype=np.float32)
    # pixel 11 is next to the 10 m points; pixel 14 is 4 px away
    assert nearest_surface(u, v, d, 20, 10, radius_px=2).tolist() == [True, True, False, False, True]
    assert nearest_surface(u, v, d, 20, 10, radius_px=0).tolist() == [True, True, False, True, True]
    assert nearest_surface(u, v, d, 20, 10, radius_px=4).tolist() == [True, True, False, False, False]
    rel = nearest_surface(u, v, d, 20, 10, radius_px=2, relative_tolerance=0.1)
    assert rel.tolist() == [True, True, True, False, True]  # tolerance max(0.5, 1.0 m)
    big = nearest_surface(u, v, d, 20, 10, radius_px=2, depth_tolerance=25.0)
    assert big.all()
    with pytest.raises(ConversionError, match="outside the 20x10 image"):
        nearest_surface(np.array([20]), np.array([0]), np.array([1.0]), 20, 10)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 19), st.floats(0.5, 50.0, width=32)), min_size=1, max_size=60),
    st.integers(0, 4),
    st.floats(0.0, 2.0),
    st.floats(0.0, 0.2),
)
def test_nearest_surface_equals_brute_force(rows: list, radius: int, tol: float, rel: float) -> None:
    u = np.array([r[0] for r in rows])
    v = np.array([r[1] for r in rows])
    d = np.array([r[2] for r in rows], dtype=np.float32)
    near = (np.abs(u[:, None] - u[None]) <= radius) & (np.abs(v[:, None] - v[None]) <= radius)
    zmin = np.where(near, d[None], np.float32(np.inf)).min(axis=1)
    expected = d <= zmin + np.maximum(np.float32(tol), zmin * np.float32(rel))
    got = nearest_surface(u, v, d, 30, 20, radius_px=radius, depth_tolerance=tol, relative_tolerance=rel)
    np.testing.assert_array_equal(got, expected)


def test_nearest_surface_mask_on_a_projection() -> None:
    cam = CameraModel.pinhole(100, 100, 100, 100, 50, 50)
    # a near point and a far point on the same ray, a far point off to the side, one behind
    pts = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 9.0], [4.0, 0.0, 9.0], [0.0, 0.0, -3.0]])
    proj = project_points(pts, RigidTransform.identity(), cam)
    assert proj.valid.tolist() == [True, True, True, False]
    assert nearest_surface_mask(proj, 100, 100).tolist() == [True, False, True, False]
    with pytest.raises(ConfigError, match="radius_px"):
        nearest_surface_mask(proj, 100, 100, radius_px=-1)


def test_occlusion_config_validation() -> None:
    with pytest.raises(ConfigError, match="depth_tolerance must be >= 0 metres, got -1"):
        OcclusionConfig(depth_tolerance=-1.0)
    with pytest.raises(ConfigError, match="relative_tolerance"):
        OcclusionConfig(relative_tolerance=float("nan"))
