"""Object3D boxes: fits of known rectangles, degenerate inputs, point-in-box, real KITTI car."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samfusion.errors import ConversionError
from samfusion.pointcloud.kitti_boxes import kitti_box_to_velo
from samfusion.pointcloud.objects3d import (
    Object3D,
    box_corners,
    compute_objects,
    fit_box,
    points_in_box,
    wrap_yaw_half_pi,
)

from ._data import load_kitti


def _rectangle_points(center, length, width, height, yaw, n_side=12):
    """Points on the outline and inside of an upright box, with top and bottom layers."""
    s = np.linspace(-0.5, 0.5, n_side)
    gx, gy = np.meshgrid(s * length, s * width)
    local = np.column_stack([gx.ravel(), gy.ravel()])
    c, sn = math.cos(yaw), math.sin(yaw)
    xy = local @ np.array([[c, sn], [-sn, c]]) + center[:2]
    bottom = np.column_stack([xy, np.full(len(xy), center[2] - height / 2)])
    top = np.column_stack([xy, np.full(len(xy), center[2] + height / 2)])
    return np.vstack([bottom, top])


def _yaw_error(a: float, b: float) -> float:
    """Difference of two axis angles (modulo pi)."""
    return abs(wrap_yaw_half_pi(a - b))


@settings(max_examples=60, deadline=None)
@given(
    cx=st.floats(-150, 150), cy=st.floats(-150, 150), cz=st.floats(-3, 3),
    width=st.floats(0.3, 3.0), extra=st.floats(0.2, 10.0), height=st.floats(0.1, 4.0),
    yaw=st.floats(-math.pi, math.pi),
)
def test_fit_recovers_known_box(cx, cy, cz, width, extra, height, yaw):
    length = width + extra
    center = np.array([cx, cy, cz])
    pts = _rectangle_points(center, length, width, height, yaw)
    c, size, fitted_yaw = fit_box(pts)
    np.testing.assert_allclose(c, center, atol=2e-3)
    np.testing.assert_allclose(size, [length, width, height], atol=2e-3)
    assert size[0] >= size[1]
    assert -math.pi / 2 <= fitted_yaw < math.pi / 2
    assert _yaw_error(fitted_yaw, yaw) < 1e-3
    # Every point it was fitted to lies in the fitted box (float32 fit: allow 1 mm).
    assert points_in_box(pts, c, size, fitted_yaw, margin=1e-3).all()


def test_single_point_gives_zero_box_at_the_point():
    c, size, yaw = fit_box(np.array([[5.0, -2.0, 0.5]]))
    np.testing.assert_allclose(c, [5.0, -2.0, 0.5])
    np.testing.assert_allclose(size, [0.0, 0.0, 0.0], atol=1e-9)
    assert yaw == 0.0


def test_two_points_give_a_zero_width_box_along_their_line():
    c, size, yaw = fit_box(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 1.0]]))
    np.testing.assert_allclose(c, [1.5, 2.0, 0.5], atol=1e-5)
    np.testing.assert_allclose(size, [5.0, 0.0, 1.0], atol=1e-5)
    assert _yaw_error(yaw, math.atan2(4.0, 3.0)) < 1e-5


@given(st.floats(-math.pi, math.pi), st.integers(3, 40))
def test_collinear_points(direction, n):
    t = np.linspace(-2.0, 5.0, n)
    pts = np.column_stack([10 + t * math.cos(direction), -4 + t * math.sin(direction), np.zeros(n)])
    c, size, yaw = fit_box(pts)
    assert size[0] == pytest.approx(7.0, abs=1e-4)
    assert size[1] == pytest.approx(0.0, abs=1e-4)
    assert _yaw_error(yaw, direction) < 1e-4
    np.testing.assert_allclose(c[:2], [10 + 1.5 * math.cos(direction), -4 + 1.5 * math.sin(direction)], atol=1e-4)


def test_repeated_identical_points():
    c, size, _ = fit_box(np.tile([[1.0, 2.0, 3.0]], (7, 1)))
    np.testing.assert_allclose(c, [1.0, 2.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(size, 0.0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.floats(-math.pi, math.pi), st.floats(0.5, 5), st.floats(0.5, 5), st.floats(0.5, 3))
def test_corners_lie_on_the_box_boundary(yaw, length, width, height):
    center = np.array([3.0, -1.0, 0.2])
    size = np.array([length, width, height])
    corners = box_corners(center, size, yaw)
    assert corners.shape == (8, 3)
    assert points_in_box(corners, center, size, yaw, margin=1e-9).all()
    pushed = center + (corners - center) * 1.01
    assert not points_in_box(pushed, center, size, yaw).any()
    # Bottom face counter-clockwise seen from above: positive signed area.
    xy = corners[:4, :2]
    area = 0.5 * np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1])
    assert area == pytest.approx(length * width)


def test_points_in_box_by_hand():
    pts = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [1.1, 0.0, 0.0], [0.0, 0.0, 0.6]])
    # A 4 x 2 x 1 box turned by 90 degrees: its length runs along y.
    inside = points_in_box(pts, (0, 0, 0), (4.0, 2.0, 1.0), math.pi / 2)
    assert inside.tolist() == [True, True, False, False]
    assert points_in_box(pts, (0, 0, 0), (4.0, 2.0, 1.0), math.pi / 2, margin=0.15).tolist() == [
        True, True, True, True,
    ]


def test_compute_objects_groups_and_labels():
    a = _rectangle_points(np.array([10.0, 0.0, 0.0]), 4.0, 2.0, 1.5, 0.3)
    b = _rectangle_points(np.array([-5.0, 7.0, 1.0]), 1.0, 0.5, 1.8, -1.0, n_side=6)
    noise = np.array([[100.0, 100.0, 100.0]])
    xyz = np.vstack([a, b, noise])
    inst = np.concatenate([np.full(len(a), 7), np.full(len(b), 3), [0]]).astype(np.uint32)
    objs = compute_objects(xyz, inst, {7: "car"}, {7: 0.9, 3: 0.4})
    assert [o.instance_id for o in objs] == [3, 7]
    car = objs[1]
    assert (car.label, car.score, car.point_count) == ("car", 0.9, len(a))
    assert objs[0].label == "unknown" and objs[0].score == 0.4
    np.testing.assert_allclose(car.centroid, a.mean(axis=0))
    np.testing.assert_allclose(car.size, [4.0, 2.0, 1.5], atol=2e-3)
    assert car.contains(a, margin=1e-3).all() and not car.contains(b).any()
    with pytest.raises(ValueError):
        car.center[0] = 1.0  # read-only arrays
    assert compute_objects(xyz, inst, {}, {}, min_points=len(b) + 1)[0].instance_id == 7
    assert compute_objects(xyz, np.zeros(len(xyz), np.uint32), {}, {}) == []


def test_object_corners_match_box_corners():
    obj = Object3D(instance_id=1, label="x", score=1.0, point_count=1, centroid=(0, 0, 0),
                   center=(1, 2, 3), size=(4, 2, 1), yaw=0.5)
    np.testing.assert_allclose(obj.corners(), box_corners((1, 2, 3), (4, 2, 1), 0.5))


def test_bad_shapes_raise():
    with pytest.raises(ConversionError, match="xyz"):
        compute_objects(np.zeros((4, 2)), np.zeros(4, np.uint32), {}, {})
    with pytest.raises(ConversionError, match="instance"):
        compute_objects(np.zeros((4, 3)), np.zeros(3, np.uint32), {}, {})
    with pytest.raises(ConversionError, match="zero points"):
        fit_box(np.zeros((0, 3)))
    with pytest.raises(ConversionError, match="size"):
        points_in_box(np.zeros((1, 3)), (0, 0, 0), (1, -1, 1), 0.0)


def test_real_kitti_car_box_is_close_to_ground_truth(shared_data):
    """The fitted box of the visible points of KITTI 000002's car at 35 m (67 points)."""
    scan, t_velo_from_rect, _, labels = load_kitti(shared_data, "000002")
    car = next(lab for lab in labels if lab.type == "Car")
    center, size, yaw = kitti_box_to_velo(car, t_velo_from_rect)
    xyz = scan[:, :3].astype(np.float64)
    inst = points_in_box(xyz, center, size, yaw).astype(np.uint32)
    (obj,) = compute_objects(xyz, inst, {1: "Car"}, {1: 1.0})
    assert obj.point_count == 67
    # Only the near side is scanned, so the fit is shorter than the annotation but aligned.
    assert np.linalg.norm(obj.center[:2] - center[:2]) < 0.4
    assert _yaw_error(obj.yaw, yaw) < 0.1
    assert size[0] - 0.8 < obj.size[0] <= size[0] + 1e-6
    assert points_in_box(xyz[inst == 1], center, size, yaw).all()
