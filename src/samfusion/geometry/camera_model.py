"""Camera intrinsics with lens distortion, as carried by sensor_msgs/CameraInfo.

:class:`CameraModel` projects points given in the camera *optical* frame (z forward, x right,
y down) to **raw (distorted) pixel coordinates** of the image the camera publishes, using K and
D with the ROS distortion models:

* ``plumb_bob`` (D = k1 k2 p1 p2 k3) and ``rational_polynomial`` (D = k1 k2 p1 p2 k3 k4 k5 k6):
  the OpenCV pinhole model, ``r2 = x^2 + y^2`` of the normalised point (x, y) = (X/Z, Y/Z),
  ``radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)``,
  ``xd = x radial + 2 p1 x y + p2 (r2 + 2 x^2)``, ``yd = y radial + p1 (r2 + 2 y^2) + 2 p2 x y``.
* ``equidistant`` (D = k1 k2 k3 k4): the OpenCV fisheye model, ``theta = atan(r)``,
  ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``,
  ``(xd, yd) = (theta_d / r) (x, y)``.
* ``none``: pinhole only.

An empty D means all coefficients zero: pinhole for plumb_bob / rational_polynomial, while
equidistant keeps its fisheye mapping (r_d = theta), which is never the pinhole.

Pixels: ``u = fx xd + skew yd + cx``, ``v = fy yd + cy``; pixel ``(i, j)`` covers
``i <= u < i + 1`` and ``j <= v < j + 1`` (the pixel index is ``floor``).

Binning and ROI follow ROS ``image_geometry.PinholeCameraModel``: ``width``/``height``/``K``/``P``
describe the full sensor; the published image is the ROI (offsets in full-resolution pixels)
divided by the binning factors (0 means 1). So ``u_image = (u_full - roi.x_offset) / binning_x``
(K's first row and cx shifted then scaled; skew scaled too), and the image size is
``(roi.width // binning_x, roi.height // binning_y)``, or the full size when the ROI is all zero.

Polynomial distortion folds back: far off-axis points map into the image again. Points beyond
the radius where the radial mapping stops increasing are reported as not projectable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from samfusion.errors import CalibrationError, ConversionError

__all__ = ["CameraModel", "Roi", "DISTORTION_MODELS"]

#: Accepted distortion models and their number of coefficients (an empty D is always accepted).
DISTORTION_MODELS: dict[str, int] = {
    "plumb_bob": 5,
    "rational_polynomial": 8,
    "equidistant": 4,
    "none": 0,
}

_FOLD_SAMPLES = 20000
_FOLD_MAX_RADIUS = 30.0  # normalised radius searched for a fold (about 88 degrees off-axis)


class Roi(NamedTuple):
    """sensor_msgs/RegionOfInterest; all zeros means the full image."""

    x_offset: int = 0
    y_offset: int = 0
    width: int = 0
    height: int = 0
    do_rectify: bool = False

    @property
    def is_full(self) -> bool:
        return self.x_offset == 0 and self.y_offset == 0 and self.width == 0 and self.height == 0


def _matrix(value: Any, shape: tuple[int, int], name: str) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == shape[0] * shape[1]:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise CalibrationError(f"camera {name} must have {shape[0]}x{shape[1]} entries, got shape {arr.shape}")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class CameraModel:
    """Intrinsics of one camera (full-sensor values, as in CameraInfo). See the module docstring."""

    width: int
    height: int
    K: NDArray[np.float64]
    D: NDArray[np.float64] | None = None
    distortion_model: str = "plumb_bob"
    R: NDArray[np.float64] | None = None
    P: NDArray[np.float64] | None = None
    frame_id: str = ""
    binning_x: int = 0
    binning_y: int = 0
    roi: Roi = field(default_factory=Roi)

    def __post_init__(self) -> None:
        k = _matrix(self.K, (3, 3), "K")
        d = np.asarray(() if self.D is None else self.D, dtype=np.float64).reshape(-1).copy()
        d.setflags(write=False)
        r = _matrix(np.eye(3) if self.R is None else self.R, (3, 3), "R")
        if self.P is None:
            p_full = np.zeros((3, 4))
            p_full[:, :3] = k
        else:
            p_full = self.P
        p = _matrix(p_full, (3, 4), "P")
        roi = self.roi if isinstance(self.roi, Roi) else Roi(*self.roi)
        roi = Roi(int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height), bool(roi.do_rectify))
        for name, value in (("K", k), ("D", d), ("R", r), ("P", p)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "roi", roi)
        object.__setattr__(self, "distortion_model", str(self.distortion_model))
        for name in ("width", "height", "binning_x", "binning_y"):
            object.__setattr__(self, name, int(getattr(self, name)))

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def pinhole(
        cls, width: int, height: int, fx: float, fy: float, cx: float, cy: float, *, frame_id: str = ""
    ) -> CameraModel:
        """An undistorted camera from four intrinsics."""
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width, height, k, np.zeros(5), "plumb_bob", frame_id=frame_id)

    def validate(self) -> CameraModel:
        """Raise CalibrationError if the model cannot project; returns self for chaining.

        The model is immutable, so a successful check is remembered (projection calls it on
        every cloud).
        """
        if self.__dict__.get("_validated", False):
            return self
        self._check()
        object.__setattr__(self, "_validated", True)
        return self

    def _check(self) -> None:
        who = f"camera '{self.frame_id}'" if self.frame_id else "camera"
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"{who} has an empty image size {self.width}x{self.height}")
        if self.distortion_model not in DISTORTION_MODELS:
            raise CalibrationError(
                f"{who}: unknown distortion model '{self.distortion_model}' "
                f"(supported: {', '.join(DISTORTION_MODELS)})"
            )
        n = DISTORTION_MODELS[self.distortion_model]
        if self.D.size not in (0, n):
            raise CalibrationError(
                f"{who}: distortion model '{self.distortion_model}' takes {n} coefficients, "
                f"D has {self.D.size}"
            )
        for name, m in (("K", self.K), ("D", self.D), ("R", self.R), ("P", self.P)):
            if not np.all(np.isfinite(m)):
                raise CalibrationError(f"{who} has non-finite values in {name}")
        if not np.any(self.K):
            raise CalibrationError(f"{who} has an all-zero K matrix (uncalibrated camera)")
        if not np.any(self.P):
            raise CalibrationError(f"{who} has an all-zero P matrix (uncalibrated camera)")
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise CalibrationError(
                f"{who} has non-positive focal lengths fx={self.K[0, 0]:g}, fy={self.K[1, 1]:g}"
            )
        if not np.allclose(self.K[2], [0.0, 0.0, 1.0]) or self.K[1, 0] != 0.0:
            raise CalibrationError(f"{who}: K must have the form [fx s cx; 0 fy cy; 0 0 1], got {self.K.tolist()}")
        if self.binning_x < 0 or self.binning_y < 0:
            raise CalibrationError(f"{who} has negative binning {self.binning_x}x{self.binning_y}")
        roi = self.roi
        if not roi.is_full and (
            roi.width <= 0
            or roi.height <= 0
            or roi.x_offset < 0
            or roi.y_offset < 0
            or roi.x_offset + roi.width > self.width
            or roi.y_offset + roi.height > self.height
        ):
            raise CalibrationError(f"{who}: ROI {tuple(roi)} does not fit the {self.width}x{self.height} image")
        w, h = self.image_size
        if w <= 0 or h <= 0:
            raise CalibrationError(f"{who}: binned image size {w}x{h} is empty")

    # ------------------------------------------------------------------ published image
    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the published image after ROI and binning."""
        w, h = (self.width, self.height) if self.roi.is_full else (self.roi.width, self.roi.height)
        return w // max(self.binning_x, 1), h // max(self.binning_y, 1)

    @cached_property
    def image_K(self) -> NDArray[np.float64]:
        """K of the published image: principal point moved by the ROI offset, then binned."""
        return self._adjust(self.K)

    @cached_property
    def image_P(self) -> NDArray[np.float64]:
        """P of the published image (same ROI / binning adjustment as image_K)."""
        return self._adjust(self.P)

    def _adjust(self, m: NDArray[np.float64]) -> NDArray[np.float64]:
        out = m.copy()
        out[0, 2] -= self.roi.x_offset
        out[1, 2] -= self.roi.y_offset
        out[0] /= max(self.binning_x, 1)
        out[1] /= max(self.binning_y, 1)
        out.setflags(write=False)
        return out

    @property
    def is_distorted(self) -> bool:
        """True when pixels are not a pinhole projection (any coefficient, or equidistant)."""
        if self.distortion_model == "equidistant":
            return True
        return self.distortion_model != "none" and bool(np.any(self.D))

    def _coefficients(self) -> list[float]:
        d = [0.0] * DISTORTION_MODELS.get(self.distortion_model, 0)
        d[: self.D.size] = [float(c) for c in self.D]
        return d

    def scaled(self, sx: float, sy: float | None = None) -> CameraModel:
        """The model of the images resized by (sx, sy): K, P rows, size and ROI scaled."""
        sy = sx if sy is None else sy
        if not (sx > 0 and sy > 0):
            raise CalibrationError(f"scale factors must be positive, got ({sx}, {sy})")
        k, p = self.K.copy(), self.P.copy()
        k[0] *= sx
        k[1] *= sy
        p[0] *= sx
        p[1] *= sy
        roi = self.roi
        if not roi.is_full:
            roi = Roi(
                round(roi.x_offset * sx), round(roi.y_offset * sy),
                round(roi.width * sx), round(roi.height * sy), roi.do_rectify,
            )
        return replace(self, width=round(self.width * sx), height=round(self.height * sy), K=k, P=p, roi=roi)

    def resized_to(self, width: int, height: int) -> CameraModel:
        """The model matching a published image resized to ``width`` x ``height``."""
        w, h = self.image_size
        return self.scaled(width / w, height / h)

    # ------------------------------------------------------------------ projection
    @cached_property
    def max_normalized_radius(self) -> float:
        """Normalised radius where the radial distortion stops increasing (inf if never)."""
        if not self.is_distorted:
            return float("inf")
        d = np.asarray(self._coefficients())
        if self.distortion_model == "equidistant":
            theta = np.linspace(0.0, np.pi / 2, _FOLD_SAMPLES)
            t2 = theta * theta
            g = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            bad = np.flatnonzero(np.diff(g) <= 0)
            return float(np.tan(theta[bad[0]])) if bad.size else float("inf")
        r = np.linspace(0.0, _FOLD_MAX_RADIUS, _FOLD_SAMPLES)
        r2 = r * r
        num = 1 + r2 * (d[0] + r2 * (d[1] + r2 * d[4]))
        den = np.ones_like(r2) if d.size < 8 else 1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7]))
        g = r * num / np.where(den > 0, den, np.nan)
        bad = np.flatnonzero(~(np.diff(g) > 0) | ~(den[1:] > 0))
        return float(r[bad[0]]) if bad.size else float("inf")

    def distort_normalized(
        self, x: NDArray[np.floating[Any]], y: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]], NDArray[np.bool_]]:
        """Apply the lens distortion to normalised coordinates (X/Z, Y/Z).

        Returns (xd, yd, ok); ``ok`` is False beyond :attr:`max_normalized_radius` and for
        non-finite input. The dtype of x and y is kept (float32 stays float32).
        """
        r2 = x * x + y * y
        rmax = self.max_normalized_radius
        ok = r2 < rmax * rmax if np.isfinite(rmax) else np.isfinite(r2)
        if not self.is_distorted:
            return x, y, ok
        d = self._coefficients()
        if self.distortion_model == "equidistant":
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(r > 1e-8, theta_d / r, 1.0).astype(x.dtype, copy=False)
            return x * scale, y * scale, ok
        k1, k2, p1, p2, k3 = d[:5]
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        if len(d) == 8:
            radial = radial / (1 + r2 * (d[5] + r2 * (d[6] + r2 * d[7])))
        xy = x * y
        xd = x * radial + 2 * p1 * xy + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * xy
        return xd, yd, ok

    def normalized_to_pixels(
        self, xd: NDArray[np.floating[Any]], yd: NDArray[np.floating[Any]]
    ) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
        """Distorted normalised coordinates -> pixels of the published image (image_K)."""
        k = self.image_K
        u = xd * float(k[0, 0]) + float(k[0, 2])
        if k[0, 1] != 0.0:
            u = u + yd * float(k[0, 1])
        v = yd * float(k[1, 1]) + float(k[1, 2])
        return u, v

    def project(
        self, points_cam: ArrayLike, *, min_depth: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Raw pixel coordinates of (N, 3) optical-frame points; float64.

        Returns ``(uv, in_front)``; ``in_front`` is False for z <= min_depth, non-finite
        points and points beyond the distortion fold; their uv is NaN. Image bounds are
        not checked here (see :func:`samfusion.geometry.projection.project_points`).
        """
        pts = np.asarray(points_cam, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ConversionError(f"points_cam must have shape (N, 3), got {pts.shape}")
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            in_front = z > min_depth
            x = pts[:, 0] / z
            y = pts[:, 1] / z
            xd, yd, ok = self.distort_normalized(x, y)
            u, v = self.normalized_to_pixels(xd, yd)
        in_front &= ok & np.isfinite(u) & np.isfinite(v)
        uv = np.stack([u, v], axis=1)
        uv[~in_front] = np.nan
        return uv, in_front
