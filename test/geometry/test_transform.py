"""RigidTransform: validation, constructors, algebra, round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samfusion.errors import CalibrationError, ConversionError
from samfusion.geometry import RigidTransform

finite = st.floats(-50.0, 50.0, allow_nan=False)
unit = st.floats(-1.0, 1.0, allow_nan=False)


@st.composite
def rigid(draw: st.DrawFn) -> RigidTransform:
    q = np.array([draw(unit) for _ in range(4)])
    if np.linalg.norm(q) < 1e-3:
        q = np.array([0.0, 0.0, 0.0, 1.0])
    return RigidTransform.from_translation_quaternion([draw(finite) for _ in range(3)], q)


def test_rejects_scaled_rotation() -> None:
    m = np.eye(4)
    m[:3, :3] *= 1.01
    with pytest.raises(CalibrationError, match="not a proper rotation"):
        RigidTransform.from_matrix(m)


def test_rejects_reflection_even_when_repairing() -> None:
    m = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(CalibrationError, match="det = -1"):
        RigidTransform.from_matrix(m)
    with pytest.raises(CalibrationError, match="det = -1"):
        RigidTransform.from_matrix(m, orthonormalize=True)


def test_rejects_bad_last_row_shape_and_nan() -> None:
    m = np.eye(4)
    m[3, 0] = 0.5
    with pytest.raises(CalibrationError, match="last row must be 0 0 0 1"):
        RigidTransform.from_matrix(m)
    with pytest.raises(CalibrationError, match=r"4x4 \(or 3x4\).*\(3, 3\)"):
        RigidTransform.from_matrix(np.eye(3))
    m = np.eye(4)
    m[0, 3] = np.nan
    with pytest.raises(CalibrationError, match="non-finite"):
        RigidTransform.from_matrix(m)


def test_orthonormalize_repairs_rounded_digits() -> None:
    exact = RigidTransform.from_translation_rpy([1, 2, 3], [0.3, -0.2, 1.1])
    rounded = np.round(exact.matrix, 3)
    with pytest.raises(CalibrationError):
        RigidTransform.from_matrix(rounded)
    repaired = RigidTransform.from_matrix(rounded, orthonormalize=True)
    assert np.abs(repaired.rotation - exact.rotation).max() < 2e-3
    np.testing.assert_array_equal(repaired.translation, [1, 2, 3])


def test_accepts_3x4_and_is_read_only() -> None:
    t = RigidTransform.from_matrix([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3]])
    np.testing.assert_allclose(t.apply([[1.0, 0.0, 0.0]]), [[1.0, 3.0, 3.0]])
    with pytest.raises(ValueError):
        t.matrix[0, 0] = 2.0


def test_yaw_quarter_turn_maps_x_to_y() -> None:
    by_rpy = RigidTransform.from_translation_rpy([0.5, 0, 0], [0, 0, math.pi / 2])
    s = math.sqrt(0.5)
    by_quat = RigidTransform.from_translation_quaternion([0.5, 0, 0], [0, 0, s, s])
    for t in (by_rpy, by_quat):
        np.testing.assert_allclose(t.apply(np.array([[1.0, 0, 0], [0, 1.0, 0]])), [[0.5, 1, 0], [-0.5, 0, 0]], atol=1e-12)


def test_rpy_is_fixed_axis_xyz() -> None:
    r, p, y = 0.3, -0.4, 1.2
    full = RigidTransform.from_translation_rpy([0, 0, 0], [r, p, y])
    z = RigidTransform.from_translation_rpy([0, 0, 0], [0, 0, y])
    yy = RigidTransform.from_translation_rpy([0, 0, 0], [0, p, 0])
    x = RigidTransform.from_translation_rpy([0, 0, 0], [r, 0, 0])
    assert full.allclose(z @ yy @ x, atol=1e-12)
    # roll about x by 90 degrees sends y to z
    roll = RigidTransform.from_translation_rpy([0, 0, 0], [math.pi / 2, 0, 0])
    np.testing.assert_allclose(roll.apply([[0.0, 1.0, 0.0]]), [[0.0, 0.0, 1.0]], atol=1e-12)


def test_quaternion_errors() -> None:
    with pytest.raises(CalibrationError, match="zero norm"):
        RigidTransform.from_translation_quaternion([0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(CalibrationError, match="4 finite numbers"):
        RigidTransform.from_translation_quaternion([0, 0, 0], [0, 0, 1])


def test_apply_keeps_float32_and_checks_shape() -> None:
    t = RigidTransform.from_translation_rpy([1, 0, 0], [0, 0, 0.1])
    pts = np.ones((5, 3), dtype=np.float32)
    assert t.apply(pts).dtype == np.float32
    assert t.apply(pts.astype(np.float64)).dtype == np.float64
    with pytest.raises(ConversionError, match=r"\(\.\.\., 3\)"):
        t.apply(np.ones((5, 2)))


def test_matmul_with_non_transform_is_type_error() -> None:
    with pytest.raises(TypeError):
        RigidTransform.identity() @ np.eye(4)  # type: ignore[operator]


@settings(max_examples=60, deadline=None)
@given(rigid(), st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=20))
def test_inverse_round_trip(t: RigidTransform, pts: list[tuple[float, float, float]]) -> None:
    p = np.array(pts)
    assert (t.inverse() @ t).allclose(RigidTransform.identity(), atol=1e-12)
    assert (t @ t.inverse()).allclose(RigidTransform.identity(), atol=1e-9)
    np.testing.assert_allclose(t.inverse().apply(t.apply(p)), p, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(rigid(), rigid(), st.tuples(finite, finite, finite))
def test_compose_applies_right_first(a: RigidTransform, b: RigidTransform, p: tuple[float, float, float]) -> None:
    pt = np.array([p])
    np.testing.assert_allclose((a @ b).apply(pt), a.apply(b.apply(pt)), atol=1e-9)
    assert (a @ b).allclose(a.compose(b), atol=0.0)


@settings(max_examples=60, deadline=None)
@given(rigid())
def test_quaternion_round_trip(t: RigidTransform) -> None:
    xyz, q = t.to_translation_quaternion()
    assert q[3] >= 0
    assert RigidTransform.from_translation_quaternion(xyz, q).allclose(t, atol=1e-9)
