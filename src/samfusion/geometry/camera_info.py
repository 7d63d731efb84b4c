"""sensor_msgs/CameraInfo <-> :class:`CameraModel`, duck-typed on the message fields.

Works with rclpy messages, rosbags messages and any object with the same attribute names
(ROS 2 lowercase ``d k r p``; ROS 1 style uppercase ``D K R P`` is accepted too). Array fields
may be lists, tuples, numpy arrays or ``array.array``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samfusion.errors import CalibrationError, ConversionError
from samfusion.geometry.camera_model import DISTORTION_MODELS, CameraModel, Roi

__all__ = ["camera_info_to_model", "camera_model_to_camera_info"]


def _field(msg: Any, name: str) -> Any:
    for candidate in (name, name.upper()):
        if hasattr(msg, candidate):
            return getattr(msg, candidate)
    raise ConversionError(f"CameraInfo message {type(msg).__name__} has no field '{name}'")


def _array(msg: Any, name: str, size: int | None) -> np.ndarray:
    raw = _field(msg, name)
    try:
        arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"CameraInfo field '{name}' is not numeric: {raw!r}") from exc
    if size is not None and arr.size != size:
        raise ConversionError(f"CameraInfo field '{name}' must have {size} values, got {arr.size}")
    return arr


def camera_info_to_model(msg: Any) -> CameraModel:
    """Build a validated :class:`CameraModel` from a CameraInfo-like message.

    Raises CalibrationError for an uncalibrated camera (all-zero K or P, bad focal lengths,
    unknown distortion model, wrong number of coefficients) and ConversionError for missing
    or malformed fields. An empty ``distortion_model`` with no coefficients means ``none``.
    """
    header = _field(msg, "header")
    frame_id = str(getattr(header, "frame_id", ""))
    width = int(_field(msg, "width"))
    height = int(_field(msg, "height"))
    model = str(_field(msg, "distortion_model"))
    k = _array(msg, "k", 9)
    d = _array(msg, "d", None)
    r = _array(msg, "r", 9)
    p = _array(msg, "p", 12)
    where = f"(frame '{frame_id}', {width}x{height})"
    if not np.any(k):
        raise CalibrationError(
            f"CameraInfo has an all-zero K matrix {where}: the camera is not calibrated; "
            "calibrate it or publish intrinsics before projecting points"
        )
    if not np.any(p):
        raise CalibrationError(
            f"CameraInfo has an all-zero P matrix {where}: the camera is not calibrated; "
            "calibrate it or publish a projection matrix before projecting points"
        )
    if model == "" and not np.any(d):
        model = "none"
        d = np.zeros(0)
    if not np.any(r):  # some drivers leave R unset for monocular cameras
        r = np.eye(3).reshape(-1)
    roi_msg = getattr(msg, "roi", None)
    roi = Roi()
    if roi_msg is not None:
        roi = Roi(
            int(roi_msg.x_offset), int(roi_msg.y_offset), int(roi_msg.width), int(roi_msg.height),
            bool(roi_msg.do_rectify),
        )
    cam = CameraModel(
        width=width,
        height=height,
        K=k.reshape(3, 3),
        D=d,
        distortion_model=model,
        R=r.reshape(3, 3),
        P=p.reshape(3, 4),
        frame_id=frame_id,
        binning_x=int(getattr(msg, "binning_x", 0)),
        binning_y=int(getattr(msg, "binning_y", 0)),
        roi=roi,
    )
    try:
        return cam.validate()
    except CalibrationError as exc:
        raise CalibrationError(f"CameraInfo {where}: {exc}") from exc


def _fields(model: CameraModel) -> dict[str, Any]:
    d = model.D
    if d.size == 0 and model.distortion_model != "none":
        d = np.zeros(DISTORTION_MODELS[model.distortion_model])
    return {
        "height": int(model.height),
        "width": int(model.width),
        "distortion_model": model.distortion_model,
        "d": np.array(d, dtype=np.float64),
        "k": np.array(model.K, dtype=np.float64).reshape(-1),
        "r": np.array(model.R, dtype=np.float64).reshape(-1),
        "p": np.array(model.P, dtype=np.float64).reshape(-1),
        "binning_x": int(model.binning_x),
        "binning_y": int(model.binning_y),
    }


def camera_model_to_camera_info(
    model: CameraModel, msg_cls: Any, header: Any = None, *, roi_cls: Any = None
) -> Any:
    """Fill a new ``msg_cls`` CameraInfo from a model.

    rclpy message classes are built empty and assigned; classes whose constructor needs every
    field (rosbags dataclasses) are built with keywords, which needs ``header`` and
    ``roi_cls`` (their RegionOfInterest class), used as given. For rclpy classes an empty
    ``header.frame_id`` is filled with the model's frame.
    """
    values = _fields(model)
    roi = model.roi
    try:
        msg = msg_cls()
    except TypeError:
        if header is None or roi_cls is None:
            raise ConversionError(
                f"{getattr(msg_cls, '__name__', msg_cls)} needs every field at construction; "
                "pass header= and roi_cls= (its RegionOfInterest class)"
            ) from None
        values["roi"] = roi_cls(
            x_offset=roi.x_offset, y_offset=roi.y_offset, height=roi.height, width=roi.width,
            do_rectify=roi.do_rectify,
        )
        return msg_cls(header=header, **values)
    for name, value in values.items():
        setattr(msg, name, value)
    msg.roi.x_offset = roi.x_offset
    msg.roi.y_offset = roi.y_offset
    msg.roi.width = roi.width
    msg.roi.height = roi.height
    msg.roi.do_rectify = roi.do_rectify
    if header is not None:
        msg.header = header
    if not msg.header.frame_id and model.frame_id:
        msg.header.frame_id = model.frame_id
    return msg
