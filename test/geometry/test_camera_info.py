"""CameraInfo <-> CameraModel: duck typing, uncalibrated cameras, rclpy and rosbags messages."""

from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from samfusion.errors import CalibrationError, ConversionError
from samfusion.geometry import CameraModel, Roi, camera_info_to_model, camera_model_to_camera_info

K = [721.5377, 0.0, 609.5593, 0.0, 721.5377, 172.854, 0.0, 0.0, 1.0]
P = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]
D = [-0.36, 0.16, 0.001, -0.0005, -0.03]
R = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def _msg(convert=list, **overrides):
    fields = dict(
        header=SimpleNamespace(frame_id="cam_left"),
        height=375,
        width=1242,
        distortion_model="plumb_bob",
        d=convert(D),
        k=convert(K),
        r=convert(R),
        p=convert(P),
        binning_x=0,
        binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    "convert", [list, tuple, np.array, lambda v: array.array("d", v)], ids=["list", "tuple", "ndarray", "array"]
)
def test_any_sequence_type_is_accepted(convert) -> None:
    cam = camera_info_to_model(_msg(convert))
    assert (cam.width, cam.height, cam.frame_id, cam.distortion_model) == (1242, 375, "cam_left", "plumb_bob")
    np.testing.assert_array_equal(cam.K.reshape(-1), K)
    np.testing.assert_array_equal(cam.P.reshape(-1), P)
    np.testing.assert_array_equal(cam.D, D)
    uv, ok = cam.project([[0.0, 0.0, 10.0]])
    np.testing.assert_allclose(uv, [[609.5593, 172.854]])


def test_all_zero_p_raises_with_the_expected_message() -> None:
    with pytest.raises(CalibrationError) as err:
        camera_info_to_model(_msg(p=[0.0] * 12))
    assert str(err.value).startswith("CameraInfo has an all-zero P matrix (frame 'cam_left', 1242x375)")


def test_all_zero_k_raises() -> None:
    with pytest.raises(CalibrationError, match=r"CameraInfo has an all-zero K matrix \(frame 'cam_left'"):
        camera_info_to_model(_msg(k=np.zeros(9)))


def test_other_problems_name_the_field() -> None:
    msg = _msg()
    del msg.p
    with pytest.raises(ConversionError, match="no field 'p'"):
        camera_info_to_model(msg)
    with pytest.raises(ConversionError, match="field 'k' must have 9 values, got 8"):
        camera_info_to_model(_msg(k=K[:8]))
    with pytest.raises(CalibrationError, match=r"CameraInfo \(frame 'cam_left', 1242x375\).*'plumb_bob' takes 5"):
        camera_info_to_model(_msg(d=D[:4]))
    with pytest.raises(CalibrationError, match="unknown distortion model 'fisheye624'"):
        camera_info_to_model(_msg(distortion_model="fisheye624"))


def test_ros1_uppercase_fields_empty_model_and_zero_r() -> None:
    msg = _msg(distortion_model="", d=[], r=[0.0] * 9)
    msg.K, msg.P, msg.D, msg.R = msg.k, msg.p, msg.d, msg.r
    for name in ("k", "p", "d", "r"):
        delattr(msg, name)
    cam = camera_info_to_model(msg)
    assert cam.distortion_model == "none" and not cam.is_distorted
    np.testing.assert_array_equal(cam.R, np.eye(3))


def test_binning_and_roi_are_read() -> None:
    roi = SimpleNamespace(x_offset=100, y_offset=50, height=200, width=600, do_rectify=True)
    cam = camera_info_to_model(_msg(binning_x=2, binning_y=2, roi=roi))
    assert cam.roi == Roi(100, 50, 600, 200, True)
    assert cam.image_size == (300, 100)


def _model() -> CameraModel:
    return CameraModel(
        1280, 960, np.array(K).reshape(3, 3), np.array(D), "plumb_bob", P=np.array(P).reshape(3, 4),
        frame_id="cam_left", binning_x=2, binning_y=1, roi=Roi(10, 20, 640, 480, False),
    )


def _assert_same(a: CameraModel, b: CameraModel) -> None:
    assert (a.width, a.height, a.frame_id, a.distortion_model) == (b.width, b.height, b.frame_id, b.distortion_model)
    assert (a.binning_x, a.binning_y, a.roi) == (b.binning_x, b.binning_y, b.roi)
    for name in ("K", "D", "R", "P"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_rclpy_message_round_trip() -> None:
    msgs = pytest.importorskip("sensor_msgs.msg")
    model = _model()
    msg = camera_model_to_camera_info(model, msgs.CameraInfo)
    assert isinstance(msg, msgs.CameraInfo)
    assert msg.header.frame_id == "cam_left" and list(msg.d) == D and msg.roi.x_offset == 10
    _assert_same(camera_info_to_model(msg), model)


def test_rclpy_header_is_used_as_given() -> None:
    msgs = pytest.importorskip("sensor_msgs.msg")
    std = pytest.importorskip("std_msgs.msg")
    header = std.Header(frame_id="other")
    header.stamp.sec = 42
    msg = camera_model_to_camera_info(_model(), msgs.CameraInfo, header)
    assert (msg.header.frame_id, msg.header.stamp.sec) == ("other", 42)


def test_rosbags_message_round_trip() -> None:
    typesys = pytest.importorskip("rosbags.typesys")
    store = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    info_cls = store.types["sensor_msgs/msg/CameraInfo"]
    header = store.types["std_msgs/msg/Header"](
        stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam_left"
    )
    with pytest.raises(ConversionError, match="pass header= and roi_cls="):
        camera_model_to_camera_info(_model(), info_cls)
    msg = camera_model_to_camera_info(
        _model(), info_cls, header, roi_cls=store.types["sensor_msgs/msg/RegionOfInterest"]
    )
    raw = store.serialize_cdr(msg, info_cls.__msgtype__)
    back = store.deserialize_cdr(raw, info_cls.__msgtype__)
    _assert_same(camera_info_to_model(back), _model())
