"""Rigid transforms (rotation + translation) between sensor frames.

A :class:`RigidTransform` named ``T_a_from_b`` maps coordinates of a point expressed in frame
``b`` into frame ``a``: ``p_a = T_a_from_b.apply(p_b)``. Composition reads right to left like
the matrices: ``T_a_from_c = T_a_from_b @ T_b_from_c``. The 4x4 matrix is validated once at
construction (proper rotation, last row ``0 0 0 1``), so every transform in the system is
known to be rigid and its inverse is exact (transpose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from samfusion.errors import CalibrationError, ConversionError

__all__ = ["RigidTransform", "ROTATION_ATOL"]

#: Largest accepted deviation of R^T R from identity (per element) and of det(R) from +1.
#: Loose enough for calibration files printed with 6-7 significant digits.
ROTATION_ATOL = 1e-4

#: Largest deviation ``from_matrix(..., orthonormalize=True)`` will repair.
_REPAIR_ATOL = 5e-2


def _as_matrix(m: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(m, dtype=np.float64)
    if arr.shape == (3, 4):
        arr = np.vstack([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.shape != (4, 4):
        raise CalibrationError(f"{what}: expected a 4x4 (or 3x4) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{what}: matrix has non-finite entries:\n{arr}")
    return arr


def _rotation_error(rot: NDArray[np.float64]) -> tuple[float, float]:
    ortho = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    return ortho, float(np.linalg.det(rot))


def _nearest_rotation(rot: NDArray[np.float64]) -> NDArray[np.float64]:
    u, _, vt = np.linalg.svd(rot)
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] *= -1.0
    return u @ vt


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """A proper rigid transform stored as a read-only 4x4 float64 ``matrix``."""

    matrix: NDArray[np.float64]

    def __post_init__(self) -> None:
        arr = _as_matrix(self.matrix, "RigidTransform").copy()
        if not np.allclose(arr[3], [0.0, 0.0, 0.0, 1.0], atol=1e-12, rtol=0.0):
            raise CalibrationError(f"RigidTransform: last row must be 0 0 0 1, got {arr[3].tolist()}")
        ortho, det = _rotation_error(arr[:3, :3])
        if ortho > ROTATION_ATOL or abs(det - 1.0) > ROTATION_ATOL:
            raise CalibrationError(
                "RigidTransform: rotation block is not a proper rotation "
                f"(max |R^T R - I| = {ortho:.3g}, det = {det:.6g}; need <= {ROTATION_ATOL:g} and +1)"
            )
        arr.setflags(write=False)
        object.__setattr__(self, "matrix", arr)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def identity(cls) -> RigidTransform:
        return cls(np.eye(4))

    @classmethod
    def from_matrix(cls, m: ArrayLike, *, orthonormalize: bool = False) -> RigidTransform:
        """Validate and wrap a 4x4 (or 3x4) matrix.

        With ``orthonormalize=True`` a rotation block that is slightly off (rounded digits in a
        file) is replaced by the nearest rotation; gross errors and reflections still raise.
        """
        arr = _as_matrix(m, "RigidTransform.from_matrix")
        if orthonormalize:
            ortho, det = _rotation_error(arr[:3, :3])
            if ortho <= _REPAIR_ATOL and det > 0:
                arr = arr.copy()
                arr[:3, :3] = _nearest_rotation(arr[:3, :3])
        return cls(arr)

    @classmethod
    def from_rotation_translation(cls, rotation: ArrayLike, translation: ArrayLike) -> RigidTransform:
        rot = np.asarray(rotation, dtype=np.float64)
        t = np.asarray(translation, dtype=np.float64).reshape(-1)
        if rot.shape != (3, 3) or t.shape != (3,):
            raise CalibrationError(
                f"expected a 3x3 rotation and a 3-vector translation, got {rot.shape} and {t.shape}"
            )
        m = np.eye(4)
        m[:3, :3] = rot
        m[:3, 3] = t
        return cls(m)

    @classmethod
    def from_translation_quaternion(cls, xyz: ArrayLike, xyzw: ArrayLike) -> RigidTransform:
        """From a translation and a quaternion in ROS order (x, y, z, w); normalised here."""
        q = np.asarray(xyzw, dtype=np.float64).reshape(-1)
        if q.shape != (4,) or not np.all(np.isfinite(q)):
            raise CalibrationError(f"quaternion must be 4 finite numbers (x, y, z, w), got {q.tolist()}")
        norm = float(np.linalg.norm(q))
        if norm < 1e-9:
            raise CalibrationError(f"quaternion {q.tolist()} has zero norm")
        x, y, z, w = q / norm
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        return cls.from_rotation_translation(rot, xyz)

    @classmethod
    def from_translation_rpy(cls, xyz: ArrayLike, rpy: ArrayLike) -> RigidTransform:
        """From a translation and roll, pitch, yaw in radians (ROS / URDF convention).

        Rotations about the fixed axes X (roll), then Y (pitch), then Z (yaw):
        ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, as in tf2 and ``static_transform_publisher``.
        """
        a = np.asarray(rpy, dtype=np.float64).reshape(-1)
        if a.shape != (3,) or not np.all(np.isfinite(a)):
            raise CalibrationError(f"rpy must be 3 finite angles in radians, got {a.tolist()}")
        cr, sr = np.cos(a[0]), np.sin(a[0])
        cp, sp = np.cos(a[1]), np.sin(a[1])
        cy, sy = np.cos(a[2]), np.sin(a[2])
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        return cls.from_rotation_translation(rz @ ry @ rx, xyz)

    # ------------------------------------------------------------------ accessors
    @property
    def rotation(self) -> NDArray[np.float64]:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> NDArray[np.float64]:
        return self.matrix[:3, 3]

    def to_translation_quaternion(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(xyz, quaternion x y z w with w >= 0), e.g. to fill a geometry_msgs/Transform."""
        r = self.rotation
        tr = float(np.trace(r))
        if tr > 0:
            s = 2.0 * np.sqrt(tr + 1.0)
            q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
        else:
            i = int(np.argmax(np.diag(r)))
            j, k = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
            q = [0.0, 0.0, 0.0, (r[k, j] - r[j, k]) / s]
            q[i] = s / 4
            q[j] = (r[j, i] + r[i, j]) / s
            q[k] = (r[k, i] + r[i, k]) / s
        quat = np.asarray(q, dtype=np.float64)
        quat /= np.linalg.norm(quat)
        if quat[3] < 0:
            quat = -quat
        return self.translation.copy(), quat

    # ------------------------------------------------------------------ algebra
    def inverse(self) -> RigidTransform:
        """The exact inverse (R^T, -R^T t)."""
        rt = self.rotation.T
        m = np.eye(4)
        m[:3, :3] = rt
        m[:3, 3] = -rt @ self.translation
        return RigidTransform(m)

    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self @ other``: apply ``other`` first, then ``self``."""
        if not isinstance(other, RigidTransform):
            raise TypeError(f"can only compose with a RigidTransform, got {type(other).__name__}")
        return RigidTransform(self.matrix @ other.matrix)

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        return self.compose(other)

    def apply(self, points: ArrayLike) -> NDArray[np.floating[Any]]:
        """Transform points of shape (..., 3).

        float32 input is computed and returned in float32 (LiDAR clouds stay cheap); anything
        else in float64.
        """
        pts = np.asarray(points)
        if pts.shape[-1:] != (3,):
            raise ConversionError(f"points must have shape (..., 3), got {pts.shape}")
        dtype = np.float32 if pts.dtype == np.float32 else np.float64
        rot = self.rotation.astype(dtype)
        t = self.translation.astype(dtype)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN / inf points (no return) stay so
            return pts.astype(dtype, copy=False) @ rot.T + t

    def allclose(self, other: RigidTransform, *, atol: float = 1e-9) -> bool:
        return bool(np.allclose(self.matrix, other.matrix, atol=atol, rtol=0.0))

    def __repr__(self) -> str:
        t = np.array2string(self.translation, precision=4, suppress_small=True)
        return f"RigidTransform(t={t}, R={np.array2string(self.rotation, precision=4)})"
