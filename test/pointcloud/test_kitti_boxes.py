"""KITTI label_2 parsing and box conversion to the velodyne frame, on the real frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samfusion.errors import CalibrationError, ConversionError
from samfusion.pointcloud.kitti_boxes import (
    kitti_box_to_velo,
    parse_label_file,
    parse_label_line,
    velo_box_to_kitti,
    velo_from_rect,
)
from samfusion.pointcloud.objects3d import box_corners, points_in_box

from ._data import load_kitti

# Velodyne points inside each annotated box, measured on these frames (the 000001 car is a
# dark car at 61 m: 12 points fall in its 2D box at all, 9 of them inside its 3D box).
EXPECTED_COUNTS = {
    "000000": [("Pedestrian", 377)],
    "000001": [("Truck", 72), ("Car", 9), ("Cyclist", 18)],
    "000002": [("Misc", 1346), ("Car", 67)],
}


def test_parse_real_label_file(shared_data):
    labels = parse_label_file((shared_data / "kitti_object/label_2/000001.txt").read_text())
    assert [lab.type for lab in labels] == ["Truck", "Car", "Cyclist"] + ["DontCare"] * 4
    car = labels[1]
    assert car.dimensions == (1.67, 1.87, 3.69)
    assert car.location == (-16.53, 2.39, 58.49)
    assert car.rotation_y == 1.57 and car.occluded == 0 and car.score is None
    assert car.bbox == (387.63, 181.54, 423.81, 203.12)
    assert [lab.has_box for lab in labels] == [True, True, True, False, False, False, False]


def test_parse_detection_line_with_score_and_errors():
    lab = parse_label_line("Car 0 1 0.5 10 20 30 40 1.5 1.6 3.9 1 2 30 -0.2 0.87")
    assert lab.score == 0.87 and lab.occluded == 1
    with pytest.raises(ConversionError, match="15 or 16"):
        parse_label_line("Car 0 1 0.5")
    with pytest.raises(ConversionError, match="non-numeric"):
        parse_label_line("Car 0 1 x 10 20 30 40 1.5 1.6 3.9 1 2 30 -0.2")
    with pytest.raises(ConversionError, match="no 3D box"):
        kitti_box_to_velo(parse_label_line("DontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10"), np.eye(4))


def _points_in_camera_box(scan_xyz, label, t_velo_from_rect):
    """Independent check in the rectified camera frame with KITTI's own box convention."""
    rect_from_velo = np.linalg.inv(t_velo_from_rect)
    p = scan_xyz @ rect_from_velo[:3, :3].T + rect_from_velo[:3, 3]
    h, w, length = label.dimensions
    d = p - (np.array(label.location) - [0.0, h / 2, 0.0])
    c, s = math.cos(label.rotation_y), math.sin(label.rotation_y)
    rot_y = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    local = d @ rot_y  # = R_y^T d per row
    return (np.abs(local[:, 0]) <= length / 2) & (np.abs(local[:, 1]) <= h / 2) & (np.abs(local[:, 2]) <= w / 2)


@pytest.mark.parametrize("frame", sorted(EXPECTED_COUNTS))
def test_real_boxes_hold_the_measured_points(shared_data, frame):
    scan, t_velo_from_rect, _, labels = load_kitti(shared_data, frame)
    xyz = scan[:, :3].astype(np.float64)
    got = []
    for lab in (lab for lab in labels if lab.has_box):
        center, size, yaw = kitti_box_to_velo(lab, t_velo_from_rect)
        inside = points_in_box(xyz, center, size, yaw)
        got.append((lab.type, int(inside.sum())))
        # The velodyne-frame upright box and the camera-frame box agree up to the frames' tilt.
        in_cam = _points_in_camera_box(xyz, lab, t_velo_from_rect)
        assert abs(int(in_cam.sum()) - int(inside.sum())) <= max(2, int(0.01 * inside.sum()))
    assert got == EXPECTED_COUNTS[frame]


@pytest.mark.parametrize("frame", sorted(EXPECTED_COUNTS))
def test_corners_match_the_kitti_corner_convention(shared_data, frame):
    """Our (center, l w h, yaw) corners equal KITTI's camera-frame corners moved to velodyne."""
    _, t_velo_from_rect, _, labels = load_kitti(shared_data, frame)
    for lab in (lab for lab in labels if lab.has_box):
        h, w, length = lab.dimensions
        xs = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * length / 2
        zs = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * w / 2
        ys = np.array([0, 0, 0, 0, -h, -h, -h, -h])
        c, s = math.cos(lab.rotation_y), math.sin(lab.rotation_y)
        rot_y = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        cam = (rot_y @ np.vstack([xs, ys, zs])).T + lab.location
        velo = cam @ t_velo_from_rect[:3, :3].T + t_velo_from_rect[:3, 3]
        ours = box_corners(*kitti_box_to_velo(lab, t_velo_from_rect))
        # Same corner set (order aside); differences come only from the ~0.5 deg frame tilt.
        dist = np.linalg.norm(ours[:, None, :] - velo[None, :, :], axis=2)
        assert dist.min(axis=1).max() < 0.05 * max(1.0, length)


@pytest.mark.parametrize("frame", sorted(EXPECTED_COUNTS))
def test_real_boxes_round_trip_exactly(shared_data, frame):
    _, t_velo_from_rect, _, labels = load_kitti(shared_data, frame)
    for lab in (lab for lab in labels if lab.has_box):
        center, size, yaw = kitti_box_to_velo(lab, t_velo_from_rect)
        location, dims, ry = velo_box_to_kitti(center, size, yaw, t_velo_from_rect)
        np.testing.assert_allclose(location, lab.location, atol=1e-9)
        np.testing.assert_allclose(dims, lab.dimensions, atol=1e-12)
        assert ry == pytest.approx(lab.rotation_y, abs=1e-9)


@settings(max_examples=80, deadline=None)
@given(
    ry=st.floats(-math.pi + 1e-6, math.pi - 1e-6),
    x=st.floats(-40, 40), y=st.floats(-2, 3), z=st.floats(1, 80),
    h=st.floats(0.5, 4), w=st.floats(0.3, 3), length=st.floats(0.3, 15),
)
def test_random_boxes_round_trip(shared_data, ry, x, y, z, h, w, length):
    _, t_velo_from_rect, _, _ = load_kitti(shared_data, "000000")
    lab = parse_label_line(f"Car 0 0 0 0 0 1 1 {h!r} {w!r} {length!r} {x!r} {y!r} {z!r} {ry!r}")
    center, size, yaw = kitti_box_to_velo(lab, t_velo_from_rect)
    location, dims, ry_back = velo_box_to_kitti(center, size, yaw, t_velo_from_rect)
    np.testing.assert_allclose(location, [x, y, z], atol=1e-9)
    np.testing.assert_allclose(dims, [h, w, length], atol=1e-12)
    assert math.remainder(ry_back - ry, 2 * math.pi) == pytest.approx(0.0, abs=1e-9)


def test_velo_from_rect_inverts_the_calibration(shared_data):
    _, t_velo_from_rect, calib, _ = load_kitti(shared_data, "000001")
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"].reshape(3, 3)
    tr = np.eye(4)
    tr[:3, :] = calib["Tr_velo_to_cam"].reshape(3, 4)
    np.testing.assert_allclose(t_velo_from_rect @ r0 @ tr, np.eye(4), atol=1e-12)
    # Camera +z (forward) is velodyne +x, camera -y (up) is velodyne +z, roughly.
    assert t_velo_from_rect[:3, 2] @ [1, 0, 0] > 0.99
    assert -t_velo_from_rect[:3, 1] @ [0, 0, 1] > 0.99
    with pytest.raises(CalibrationError, match="singular"):
        velo_from_rect(np.zeros(9), calib["Tr_velo_to_cam"])
    with pytest.raises(CalibrationError, match="3x3, 3x4 or 4x4"):
        velo_from_rect(np.eye(2), calib["Tr_velo_to_cam"])
