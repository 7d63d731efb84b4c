"""Instance palette and marker specs."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from samfusion.errors import ConfigError
from samfusion.pointcloud.markers import (
    BACKGROUND_COLOR,
    MarkerKind,
    instance_color,
    instance_colors,
    markers_from_objects,
    yaw_to_quaternion,
)
from samfusion.pointcloud.objects3d import Object3D


@given(st.integers(1, 2**32 - 1))
def test_color_matches_an_independent_hsv_conversion(instance_id):
    hue = (instance_id * 0.6180339887498949) % 1.0
    level = instance_id % 3
    ref = colorsys.hsv_to_rgb(hue, (0.85, 0.65, 1.0)[level], (1.0, 0.8, 0.62)[level])
    got = instance_color(instance_id)
    assert all(abs(g - r * 255.0) <= 0.5 + 1e-6 for g, r in zip(got, ref))
    assert got == instance_color(instance_id)  # deterministic


def test_vector_and_scalar_palettes_agree_and_zero_is_grey():
    ids = np.arange(0, 500)
    table = instance_colors(ids)
    assert table.dtype == np.uint8 and table.shape == (500, 3)
    assert tuple(table[0]) == BACKGROUND_COLOR == instance_color(0)
    assert all(tuple(int(c) for c in table[i]) == instance_color(i) for i in range(500))
    assert instance_colors(np.zeros((0,), np.int64)).shape == (0, 3)
    with pytest.raises(ConfigError):
        instance_colors(np.array([-1]))


def test_first_ids_are_well_separated():
    colors = instance_colors(np.arange(1, 21)).astype(float)
    dist = np.linalg.norm(colors[:, None] - colors[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 70.0  # measured: 70.3 over ids 1..20 (RGB units)
    consecutive = np.linalg.norm(np.diff(instance_colors(np.arange(1, 201)).astype(float), axis=0), axis=1)
    assert consecutive.min() > 90.0
    grey = np.linalg.norm(colors - np.array(BACKGROUND_COLOR), axis=1)
    assert grey.min() > 60.0


@given(st.floats(-math.pi, math.pi))
def test_quaternion_rotates_x_to_yaw(yaw):
    x, y, z, w = yaw_to_quaternion(yaw)
    assert x == 0.0 and y == 0.0 and z * z + w * w == pytest.approx(1.0)
    # Rotate (1, 0, 0) by the quaternion: for a pure z rotation, angle = 2 atan2(z, w).
    assert math.remainder(2.0 * math.atan2(z, w) - yaw, 2 * math.pi) == pytest.approx(0.0, abs=1e-12)


def _obj(instance_id, center, size, yaw, label="car", score=0.8):
    return Object3D(instance_id=instance_id, label=label, score=score, point_count=10,
                    centroid=np.asarray(center) + 0.1, center=center, size=size, yaw=yaw)


def test_markers_per_object():
    objs = [_obj(4, (10.0, 2.0, -0.5), (4.0, 1.8, 1.5), 0.25), _obj(9, (0, 0, 0), (0, 0, 0), 0.0, "cone", 0.5)]
    specs = markers_from_objects(objs, namespace="cam", box_alpha=0.3)
    assert len(specs) == 6
    assert [s.kind for s in specs[:3]] == [MarkerKind.BOX, MarkerKind.SPHERE, MarkerKind.TEXT]
    assert {s.namespace for s in specs} == {"cam/box", "cam/centroid", "cam/label"}
    assert [s.id for s in specs] == [4, 4, 4, 9, 9, 9]
    box, sphere, text = specs[:3]
    assert box.position == (10.0, 2.0, -0.5) and box.scale == (4.0, 1.8, 1.5)
    assert box.orientation == yaw_to_quaternion(0.25)
    r, g, b = instance_color(4)
    assert box.color == pytest.approx((r / 255, g / 255, b / 255, 0.3))
    assert sphere.color[:3] == box.color[:3] and sphere.color[3] == 1.0
    assert sphere.position == pytest.approx((10.1, 2.1, -0.4))
    assert text.text == "car #4 0.80"
    assert text.position[2] == pytest.approx(-0.5 + 0.75 + 0.3 + 0.3)  # above the box top
    # A zero-size object still gets a visible box.
    assert specs[3].scale == (0.05, 0.05, 0.05)
    assert specs[5].text == "cone #9 0.50"


def test_marker_options_are_validated():
    with pytest.raises(ConfigError):
        markers_from_objects([], box_alpha=1.5)
    with pytest.raises(ConfigError):
        markers_from_objects([], text_height_m=0.0)
    assert markers_from_objects([]) == []
