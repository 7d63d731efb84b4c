"""CameraModel: distortion models against OpenCV, fold-back, binning / ROI, scaling, validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samfusion.errors import CalibrationError
from samfusion.geometry import CameraModel, RigidTransform, Roi, project_points, project_to_cameras

K_REAL = np.array([[1266.4172, 0.0, 816.267], [0.0, 1266.4172, 491.507], [0.0, 0.0, 1.0]])


def _cv2_pinhole(pts: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    uv, _ = cv2.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, d)
    return uv.reshape(-1, 2)


def _cv2_fisheye(pts: np.ndarray, k: np.ndarray, d: np.ndarray) -> np.ndarray:
    uv, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, d)
    return uv.reshape(-1, 2)


points_in_front = st.lists(
    st.tuples(st.floats(-1.2, 1.2), st.floats(-0.9, 0.9), st.floats(0.5, 80.0)), min_size=1, max_size=40
).map(lambda rows: np.array([[x * z, y * z, z] for x, y, z in rows]))


@settings(max_examples=80, deadline=None)
@given(
    points_in_front,
    st.tuples(
        st.floats(-0.4, 0.4), st.floats(-0.2, 0.2), st.floats(-0.01, 0.01), st.floats(-0.01, 0.01), st.floats(-0.05, 0.05)
    ),
    st.floats(200.0, 2500.0),
    st.floats(0.8, 1.2),
)
def test_plumb_bob_matches_opencv(pts: np.ndarray, d: tuple, fx: float, aspect: float) -> None:
    k = np.array([[fx, 0, 640.5], [0, fx * aspect, 360.25], [0, 0, 1]])
    cam = CameraModel(1280, 720, k, np.array(d), "plumb_bob")
    uv, ok = cam.project(pts)
    ref = _cv2_pinhole(pts, k, np.array(d))
    assert ok.any() or np.isfinite(cam.max_normalized_radius)
    np.testing.assert_allclose(uv[ok], ref[ok], rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    points_in_front,
    st.lists(st.floats(-0.3, 0.3), min_size=8, max_size=8),
)
def test_rational_polynomial_matches_opencv(pts: np.ndarray, d8: list[float]) -> None:
    d = np.array(d8)
    d[2:4] *= 0.05  # tangential terms are small in practice
    cam = CameraModel(1600, 900, K_REAL, d, "rational_polynomial")
    uv, ok = cam.project(pts)
    np.testing.assert_allclose(uv[ok], _cv2_pinhole(pts, K_REAL, d)[ok], rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-3.0, 3.0), st.floats(-3.0, 3.0), st.floats(0.2, 30.0)), min_size=1, max_size=40),
    st.lists(st.floats(-0.05, 0.05), min_size=4, max_size=4),
)
def test_equidistant_matches_opencv_fisheye(rows: list[tuple[float, float, float]], d4: list[float]) -> None:
    pts = np.array([[x * z, y * z, z] for x, y, z in rows])
    k = np.array([[400.0, 0, 640.0], [0, 401.0, 480.0], [0, 0, 1]])
    cam = CameraModel(1280, 960, k, np.array(d4), "equidistant")
    uv, ok = cam.project(pts)
    # rejected exactly beyond the first angle where theta_d(theta) stops increasing
    k1, k2, k3, k4 = d4
    grid = np.linspace(0.0, np.pi / 2, 200001)
    slope = 1 + 3 * k1 * grid**2 + 5 * k2 * grid**4 + 7 * k3 * grid**6 + 9 * k4 * grid**8
    turning = grid[np.argmax(slope <= 0)] if (slope <= 0).any() else np.pi / 2
    theta = np.arctan(np.hypot(pts[:, 0], pts[:, 1]) / pts[:, 2])
    decided = np.abs(theta - turning) > 1e-3
    assert (ok[decided] == (theta[decided] < turning)).all()
    np.testing.assert_allclose(uv[ok], _cv2_fisheye(pts, k, np.array(d4))[ok], rtol=1e-9, atol=1e-6)


def test_real_opencalib_distortion_matches_opencv(opencalib_rig, opencalib_points) -> None:
    cam = opencalib_rig.camera_model
    pts = opencalib_rig.T_cam_from_lidar.apply(opencalib_points[:, :3])
    uv, ok = cam.project(pts, min_depth=0.1)
    assert np.count_nonzero(ok) == np.count_nonzero(pts[:, 2] > 0.1)  # this lens never folds
    ref = _cv2_pinhole(pts[ok], cam.K, cam.D)
    np.testing.assert_allclose(uv[ok], ref, rtol=1e-12, atol=1e-6)


def test_points_behind_or_at_min_depth_are_not_in_front() -> None:
    cam = CameraModel.pinhole(640, 480, 500, 500, 320, 240)
    pts = np.array([[0.0, 0.0, -5.0], [0.1, 0.1, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.50001], [np.nan, 0, 3]])
    uv, ok = cam.project(pts, min_depth=0.5)
    assert ok.tolist() == [False, False, False, True, False]
    assert np.isnan(uv[~ok]).all()
    np.testing.assert_allclose(uv[3], [320.0, 240.0])


def test_fold_back_is_rejected_where_opencv_wraps_into_the_image() -> None:
    # r * (1 - 0.5 r^2) peaks at r = sqrt(2/3); a point at r = 1.6 maps back to r_d = -0.448.
    cam = CameraModel(1600, 900, K_REAL, [-0.5, 0.0, 0.0, 0.0, 0.0], "plumb_bob")
    assert cam.max_normalized_radius == pytest.approx(np.sqrt(2 / 3), abs=2e-3)
    far_off_axis = np.array([[1.6, 0.0, 1.0], [0.5, 0.0, 1.0]])
    ref = _cv2_pinhole(far_off_axis, cam.K, cam.D)
    assert 0 <= ref[0, 0] < 1600 and 0 <= ref[0, 1] < 900  # OpenCV puts it inside the image
    uv, ok = cam.project(far_off_axis)
    assert ok.tolist() == [False, True]
    proj = project_points(far_off_axis, RigidTransform.identity(), cam)
    assert proj.valid.tolist() == [False, True]


def test_image_bounds_at_the_edges() -> None:
    # fx = fy = 1, cx = cy = 0, z = 1: pixel coordinates equal x and y exactly.
    cam = CameraModel.pinhole(100, 50, 1.0, 1.0, 0.0, 0.0)
    xs = [0.0, 99.0, 99.999, 100.0, -0.001, 50.0, 50.0, 50.0]
    ys = [0.0, 49.0, 49.5, 10.0, 10.0, 49.999, 50.0, -1e-9]
    pts = np.array([[x, y, 1.0] for x, y in zip(xs, ys)])
    expected = [True, True, True, False, False, True, False, False]
    proj = project_points(pts, RigidTransform.identity(), cam)
    assert proj.valid.tolist() == expected
    assert proj.u[:3].tolist() == [0, 99, 99] and proj.v[:3].tolist() == [0, 49, 49]
    hits = project_to_cameras(pts, [RigidTransform.identity()], [cam])[0]
    assert hits.index.tolist() == np.flatnonzero(expected).tolist()
    assert hits.u.tolist() == proj.u[proj.valid].tolist()


def test_binning_and_roi_follow_image_geometry() -> None:
    full = CameraModel(1280, 960, [[800, 0, 640, 0, 810, 480, 0, 0, 1]], np.zeros(5), "plumb_bob")
    cam = CameraModel(
        1280, 960, full.K, np.zeros(5), "plumb_bob", binning_x=2, binning_y=4, roi=Roi(100, 40, 640, 480, False)
    )
    cam.validate()
    assert cam.image_size == (320, 120)
    np.testing.assert_allclose(cam.image_K, [[400, 0, 270], [0, 202.5, 110], [0, 0, 1]])
    np.testing.assert_allclose(cam.image_P[:, :3], cam.image_K)
    # full-image pixels: (720, 439.5), (580, 500.25), (50, 480) -- the last is left of the ROI
    pts = np.array([[0.2, -0.1, 2.0], [-0.3, 0.1, 4.0], [-0.7375, 0.0, 1.0]])
    uv_full, _ = full.project(pts)
    np.testing.assert_allclose(uv_full, [[720, 439.5], [580, 500.25], [50, 480]])
    uv, _ = cam.project(pts)
    np.testing.assert_allclose(uv, [[310, 99.875], [240, 115.0625], [-25, 110]])
    # the published image is 320 x 120: bounds use it
    proj = project_points(pts, RigidTransform.identity(), cam)
    assert proj.valid.tolist() == [True, True, False]
    assert proj.u.tolist() == [310, 240, -1] and proj.v.tolist() == [99, 115, -1]
    # binning only (ROI all zero = full image)
    binned = CameraModel(1280, 960, full.K, None, "none", binning_x=2, binning_y=2)
    assert binned.image_size == (640, 480)
    np.testing.assert_allclose(binned.project(pts)[0], uv_full / 2)


def test_scaled_and_resized_models() -> None:
    cam = CameraModel(1600, 900, K_REAL, [0.1, -0.05, 0.001, 0.002, 0.0], "plumb_bob", frame_id="cam")
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (800, 450) and half.frame_id == "cam"
    pts = np.array([[1.0, 0.5, 10.0], [-2.0, 1.0, 5.0]])
    np.testing.assert_allclose(half.project(pts)[0], cam.project(pts)[0] * 0.5)
    same = cam.resized_to(1024, 576)
    np.testing.assert_allclose(same.project(pts)[0], cam.project(pts)[0] * [0.64, 0.64])
    with pytest.raises(CalibrationError, match="positive"):
        cam.scaled(0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"K": np.zeros((3, 3))}, "all-zero K"),
        ({"P": np.zeros((3, 4))}, "all-zero P"),
        ({"K": [[-5, 0, 320], [0, 500, 240], [0, 0, 1]]}, "non-positive focal lengths fx=-5"),
        ({"width": 0}, "empty image size 0x480"),
        ({"distortion_model": "kannala"}, "unknown distortion model 'kannala'"),
        ({"D": np.zeros(4)}, "'plumb_bob' takes 5 coefficients, D has 4"),
        ({"distortion_model": "equidistant", "D": np.zeros(5)}, "'equidistant' takes 4 coefficients"),
        ({"roi": Roi(600, 0, 100, 100, False)}, r"ROI \(600, 0, 100, 100, False\) does not fit"),
    ],
)
def test_validate_names_the_problem(kwargs: dict, message: str) -> None:
    args = {"width": 640, "height": 480, "K": [[500, 0, 320], [0, 500, 240], [0, 0, 1]], "D": np.zeros(5),
            "distortion_model": "plumb_bob", "frame_id": "front"}
    args.update(kwargs)
    with pytest.raises(CalibrationError, match=message):
        CameraModel(**args).validate()


def test_bad_matrix_shapes_fail_at_construction() -> None:
    with pytest.raises(CalibrationError, match=r"camera K must have 3x3 entries, got shape \(8,\)"):
        CameraModel(640, 480, np.ones(8))


def test_empty_d_means_no_distortion() -> None:
    cam = CameraModel(640, 480, [[500, 0, 320], [0, 500, 240], [0, 0, 1]], [], "rational_polynomial").validate()
    assert not cam.is_distorted
    np.testing.assert_allclose(cam.project([[1.0, 1.0, 2.0]])[0], [[570.0, 490.0]])
