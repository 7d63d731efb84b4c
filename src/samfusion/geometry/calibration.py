"""Camera rigs (intrinsics + LiDAR-to-camera extrinsics) loaded from calibration files.

A :class:`CameraRig` is everything needed to project a LiDAR cloud into one camera:
its :class:`CameraModel` and ``T_cam_from_lidar``, which maps points from the LiDAR frame
into the camera *optical* frame (z forward, x right, y down); in tf2 terms it is
``lookup_transform(target=camera_optical_frame, source=lidar_frame)``.

Loaders: KITTI object ``calib/*.txt``, the nuScenes sample ``calib.json`` of the shared data,
OpenCalib intrinsic/extrinsic JSON pairs, and plain parameters (node YAML). Every file problem
raises CalibrationError naming the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from samfusion.errors import CalibrationError
from samfusion.geometry.camera_model import CameraModel
from samfusion.geometry.transform import RigidTransform

__all__ = [
    "CameraRig",
    "KittiCalibration",
    "load_kitti_calib",
    "load_nuscenes_calib",
    "load_opencalib",
    "rig_from_parameters",
    "image_size_of",
]


@dataclass(frozen=True, eq=False)
class CameraRig:
    """One camera of a sensor rig.

    ``time_offset_s`` is the camera stamp minus the LiDAR stamp (seconds), for callers that
    compensate ego motion between the two (see ``label_points_multi``).
    """

    name: str
    camera_model: CameraModel
    T_cam_from_lidar: RigidTransform
    time_offset_s: float = 0.0


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except OSError as exc:
        raise CalibrationError(f"cannot read the image size of {path}: {exc}") from exc


def _k_from_p(p: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Split a rectified 3x4 projection P = K [I | t] into K and t = K^-1 P[:, 3]."""
    k = p[:, :3].copy()
    return k, np.linalg.solve(k, p[:, 3])


# ---------------------------------------------------------------------------------- KITTI
@dataclass(frozen=True, eq=False)
class KittiCalibration:
    """A KITTI object-benchmark calibration file (all matrices row-major as in the file).

    Cameras 0..3 share the rectified frame of camera 0 (``R0_rect``); camera ``i`` projects
    with ``P_i = K_i [I | t_i]``. The camera models and transforms here put camera ``i``'s
    optical frame at that offset ``t_i``, so ``K_i`` alone projects and each model's P is
    ``[K_i | 0]`` (ROS convention for a camera's own frame). The raw ``P2`` is kept as a field.
    """

    path: Path
    P0: NDArray[np.float64]
    P1: NDArray[np.float64]
    P2: NDArray[np.float64]
    P3: NDArray[np.float64]
    R0_rect: NDArray[np.float64]
    Tr_velo_to_cam: NDArray[np.float64]
    Tr_imu_to_velo: NDArray[np.float64] | None
    image_size: tuple[int, int]

    def projection(self, index: int) -> NDArray[np.float64]:
        if index not in (0, 1, 2, 3):
            raise CalibrationError(f"KITTI has cameras 0..3, got {index}")
        p: NDArray[np.float64] = getattr(self, f"P{index}")
        return p

    def camera_model_for(self, index: int, *, frame_id: str | None = None) -> CameraModel:
        k, _ = _k_from_p(self.projection(index))
        w, h = self.image_size
        return CameraModel(w, h, k, np.zeros(5), "plumb_bob", frame_id=frame_id or f"camera_{index}")

    def T_cam_from_velo_for(self, index: int) -> RigidTransform:
        """Velodyne -> rectified optical frame of camera ``index`` (R0_rect and P offset included)."""
        _, t = _k_from_p(self.projection(index))
        rect = np.eye(4)
        rect[:3, :3] = self.R0_rect
        rect[:3, 3] = t
        velo = np.vstack([self.Tr_velo_to_cam, [0.0, 0.0, 0.0, 1.0]])
        try:
            return RigidTransform.from_matrix(rect @ velo)
        except CalibrationError as exc:
            raise CalibrationError(f"KITTI calibration {self.path}: R0_rect / Tr_velo_to_cam: {exc}") from exc

    @property
    def camera_model(self) -> CameraModel:
        """Camera 2 (left colour): K = P2[:, :3], no distortion (images are rectified)."""
        return self.camera_model_for(2)

    @property
    def T_cam_from_velo(self) -> RigidTransform:
        """Velodyne -> camera-2 rectified optical frame."""
        return self.T_cam_from_velo_for(2)

    def rig(self, index: int = 2) -> CameraRig:
        return CameraRig(f"camera_{index}", self.camera_model_for(index), self.T_cam_from_velo_for(index))


def _kitti_values(path: Path, entries: Mapping[str, list[float]], key: str, shape: tuple[int, int]) -> NDArray[np.float64]:
    if key not in entries:
        raise CalibrationError(f"KITTI calibration {path}: missing key '{key}'")
    values = entries[key]
    if len(values) != shape[0] * shape[1]:
        raise CalibrationError(
            f"KITTI calibration {path}: key '{key}' has {len(values)} values, expected {shape[0] * shape[1]}"
        )
    arr = np.asarray(values, dtype=np.float64).reshape(shape)
    arr.setflags(write=False)
    return arr


def load_kitti_calib(path: str | Path, image_size: tuple[int, int] | None = None) -> KittiCalibration:
    """Read a KITTI object calib file (``P0..P3``, ``R0_rect``, ``Tr_velo_to_cam``).

    ``image_size`` is (width, height) of the camera images (it varies by drive: 1224x370,
    1242x375, ...). When omitted it is read from ``../image_2/<stem>.png`` beside the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CalibrationError(f"cannot read KITTI calibration {path}: {exc}") from exc
    entries: dict[str, list[float]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise CalibrationError(f"KITTI calibration {path}: line {lineno} has no 'key:' prefix")
        try:
            entries[key.strip()] = [float(v) for v in rest.split()]
        except ValueError as exc:
            raise CalibrationError(f"KITTI calibration {path}: key '{key.strip()}': {exc}") from exc
    if image_size is None:
        image = path.parent.parent / "image_2" / f"{path.stem}.png"
        if not image.exists():
            raise CalibrationError(
                f"KITTI calibration {path}: pass image_size=(width, height); no image at {image}"
            )
        image_size = image_size_of(image)
    # Older raw-data files call R0_rect "R_rect" and Tr_velo_to_cam "Tr_velo_cam".
    aliases = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}
    for old, new in aliases.items():
        if old in entries and new not in entries:
            entries[new] = entries[old]
    return KittiCalibration(
        path=path,
        P0=_kitti_values(path, entries, "P0", (3, 4)),
        P1=_kitti_values(path, entries, "P1", (3, 4)),
        P2=_kitti_values(path, entries, "P2", (3, 4)),
        P3=_kitti_values(path, entries, "P3", (3, 4)),
        R0_rect=_kitti_values(path, entries, "R0_rect", (3, 3)),
        Tr_velo_to_cam=_kitti_values(path, entries, "Tr_velo_to_cam", (3, 4)),
        Tr_imu_to_velo=(
            _kitti_values(path, entries, "Tr_imu_to_velo", (3, 4)) if "Tr_imu_to_velo" in entries else None
        ),
        image_size=(int(image_size[0]), int(image_size[1])),
    )


# ---------------------------------------------------------------------------------- JSON helpers
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read calibration JSON {path}: {exc}") from exc


def _get(tree: Any, keys: tuple[str, ...], path: Path) -> Any:
    node = tree
    for i, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            raise CalibrationError(f"calibration {path}: missing key '{'.'.join(keys[: i + 1])}'")
        node = node[key]
    return node


def _matrix(value: Any, shape: tuple[int, int], key: str, path: Path) -> NDArray[np.float64]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"calibration {path}: key '{key}' is not numeric") from exc
    if arr.size == shape[0] * shape[1]:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise CalibrationError(f"calibration {path}: key '{key}' has shape {arr.shape}, expected {shape}")
    return arr


def _transform(value: NDArray[np.float64], key: str, path: Path) -> RigidTransform:
    try:
        return RigidTransform.from_matrix(value)
    except CalibrationError as exc:
        raise CalibrationError(f"calibration {path}: key '{key}': {exc}") from exc


# ---------------------------------------------------------------------------------- nuScenes
def load_nuscenes_calib(path: str | Path, image_size: tuple[int, int] | None = None) -> dict[str, CameraRig]:
    """The six cameras of the shared nuScenes sample ``calib.json`` (or its directory).

    Per camera: ``cam2img`` is K (images are undistorted), ``lidar2cam`` is T_cam_from_lidar,
    the image size comes from the camera's jpg (1600x900) unless ``image_size`` is given, and
    ``time_offset_s`` is the camera timestamp minus the sample (LIDAR_TOP) timestamp.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "calib.json"
    tree = _read_json(path)
    cameras = _get(tree, ("cameras",), path)
    lidar_stamp = float(_get(tree, ("timestamp",), path))
    if not isinstance(cameras, Mapping) or not cameras:
        raise CalibrationError(f"calibration {path}: key 'cameras' holds no cameras")
    rigs: dict[str, CameraRig] = {}
    for name in cameras:
        k = _matrix(_get(tree, ("cameras", name, "cam2img"), path), (3, 3), f"cameras.{name}.cam2img", path)
        key = f"cameras.{name}.lidar2cam"
        t = _transform(_matrix(_get(tree, ("cameras", name, "lidar2cam"), path), (4, 4), key, path), key, path)
        size = image_size
        if size is None:
            image = path.parent / str(_get(tree, ("cameras", name, "file"), path))
            if not image.exists():
                raise CalibrationError(f"calibration {path}: camera {name}: pass image_size; no image at {image}")
            size = image_size_of(image)
        stamp = float(_get(tree, ("cameras", name, "timestamp"), path))
        model = CameraModel(size[0], size[1], k, np.zeros(5), "plumb_bob", frame_id=name)
        try:
            model.validate()
        except CalibrationError as exc:
            raise CalibrationError(f"calibration {path}: key 'cameras.{name}.cam2img': {exc}") from exc
        rigs[name] = CameraRig(name, model, t, time_offset_s=stamp - lidar_stamp)
    return rigs


# ---------------------------------------------------------------------------------- OpenCalib
def _opencalib_param(tree: Any, path: Path) -> tuple[str, Any]:
    if not isinstance(tree, Mapping) or len(tree) != 1:
        raise CalibrationError(f"calibration {path}: expected one top-level '<sensor>-<kind>' object")
    (top, body), = tree.items()
    return str(_get(tree, (top, "sensor_name"), path)), _get(tree, (top, "param"), path)


def load_opencalib(
    intrinsic_json: str | Path, extrinsic_json: str | Path, image_size: tuple[int, int]
) -> CameraRig:
    """An OpenCalib (PJLab SensorsCalibration) camera: ``cam_K``, ``cam_dist``, ``sensor_calib``.

    ``image_size`` is required: the files' ``img_dist_w/h`` may not match the images (the
    shared sample says 1920x1080, its image is 1920x1200). Four coefficients (k1 k2 p1 p2)
    become plumb_bob with k3 = 0; eight are rational_polynomial. ``time_lag`` is ignored
    (its unit is not documented).
    """
    ipath, epath = Path(intrinsic_json), Path(extrinsic_json)
    name, param = _opencalib_param(_read_json(ipath), ipath)
    k = _matrix(_get(param, ("cam_K", "data"), ipath), (3, 3), "cam_K.data", ipath)
    dist = np.asarray(_get(param, ("cam_dist", "data"), ipath), dtype=np.float64).reshape(-1)
    if dist.size in (4, 5):
        model_name, d = "plumb_bob", np.concatenate([dist, np.zeros(5 - dist.size)])
    elif dist.size == 8:
        model_name, d = "rational_polynomial", dist
    else:
        raise CalibrationError(f"calibration {ipath}: key 'cam_dist.data' has {dist.size} coefficients (4, 5 or 8)")
    _, eparam = _opencalib_param(_read_json(epath), epath)
    key = "sensor_calib.data"
    t = _transform(_matrix(_get(eparam, ("sensor_calib", "data"), epath), (4, 4), key, epath), key, epath)
    model = CameraModel(int(image_size[0]), int(image_size[1]), k, d, model_name, frame_id=name)
    try:
        model.validate()
    except CalibrationError as exc:
        raise CalibrationError(f"calibration {ipath}: {exc}") from exc
    return CameraRig(name, model, t)


# ---------------------------------------------------------------------------------- parameters
def rig_from_parameters(
    name: str,
    K: ArrayLike,
    D: ArrayLike,
    distortion_model: str,
    width: int,
    height: int,
    translation: ArrayLike,
    rotation_quaternion_xyzw: ArrayLike,
    *,
    frame_id: str | None = None,
    time_offset_s: float = 0.0,
) -> CameraRig:
    """A rig from node parameters: K (9 values or 3x3), D, model, size, and T_cam_from_lidar.

    ``translation`` / ``rotation_quaternion_xyzw`` map LiDAR points into the camera optical
    frame (the tf2 transform with target = camera optical frame, source = LiDAR frame).
    """
    try:
        model = CameraModel(int(width), int(height), K, D, distortion_model, frame_id=frame_id or name)
        model.validate()
        t = RigidTransform.from_translation_quaternion(translation, rotation_quaternion_xyzw)
    except CalibrationError as exc:
        raise CalibrationError(f"camera '{name}' parameters: {exc}") from exc
    return CameraRig(name, model, t, time_offset_s=float(time_offset_s))
