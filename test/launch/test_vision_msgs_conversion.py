"""Results as vision_msgs-shaped detections: values on plain data, the generic message filler on
our own interfaces, and real vision_msgs messages where vision_msgs is installed."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest

from samfusion.errors import ConversionError
from samfusion.vision_msgs_conversion import (
    DetectedObject,
    detection_2d_array,
    detection_3d_array,
    header_dict,
    objects_from_frame,
    objects_from_result,
)

HEADER = header_dict(sec=12, nanosec=500, frame_id="camera_optical")
CAR = DetectedObject(7, "car", 0.9, box_2d=(10.0, 20.0, 50.0, 40.0), center_3d=(8.0, -1.0, 0.5),
                     size_3d=(4.0, 1.8, 1.5), yaw=math.pi / 2)
PERSON = DetectedObject(3, "person", 0.75, box_2d=(100.0, 10.0, 120.0, 80.0))
LOST = DetectedObject(9, "car", 0.2, box_2d=(0.0, 0.0, 5.0, 5.0), frames_lost=2)
EMPTY = DetectedObject(11, "", 0.6, box_2d=(0.0, 0.0, 0.0, 0.0))


def test_header_from_seconds_and_from_a_header() -> None:
    assert header_dict(1.25, "velodyne") == {"stamp": {"sec": 1, "nanosec": 250_000_000},
                                             "frame_id": "velodyne"}
    msg_header = NS(stamp=NS(sec=5, nanosec=7), frame_id="cam")
    assert header_dict(msg_header) == {"stamp": {"sec": 5, "nanosec": 7}, "frame_id": "cam"}
    assert header_dict(msg_header, "override")["frame_id"] == "override"
    with pytest.raises(ConversionError):
        header_dict(float("nan"))


def test_detection_2d_array_values() -> None:
    data = detection_2d_array([CAR, LOST, PERSON, EMPTY], HEADER)
    assert data["header"] == HEADER
    assert [d["id"] for d in data["detections"]] == ["3", "7"]  # visible only, by instance id
    car = data["detections"][1]
    assert car["results"] == [{"hypothesis": {"class_id": "car", "score": 0.9},
                               "pose": {"pose": {"position": {"x": 0.0, "y": 0.0, "z": 0.0},
                                                 "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}}}]
    assert car["bbox"] == {"center": {"position": {"x": 30.0, "y": 30.0}, "theta": 0.0},
                           "size_x": 40.0, "size_y": 20.0}
    assert car["header"] == HEADER


def test_detection_3d_array_values() -> None:
    lidar = header_dict(sec=12, nanosec=500, frame_id="velodyne")
    data = detection_3d_array([PERSON, CAR], lidar)
    assert [d["id"] for d in data["detections"]] == ["7"]  # the person has no LiDAR points
    car = data["detections"][0]
    center = car["bbox"]["center"]
    assert center["position"] == {"x": 8.0, "y": -1.0, "z": 0.5}
    q = center["orientation"]
    assert (q["x"], q["y"]) == (0.0, 0.0)
    assert q["z"] == pytest.approx(math.sqrt(0.5)) and q["w"] == pytest.approx(math.sqrt(0.5))
    assert car["bbox"]["size"] == {"x": 4.0, "y": 1.8, "z": 1.5}
    assert car["results"][0]["hypothesis"] == {"class_id": "car", "score": 0.9}
    assert car["results"][0]["pose"]["pose"] == center
    assert data["header"]["frame_id"] == "velodyne"


@pytest.mark.parametrize("kwargs", [
    {"instance_id": -1, "label": "x", "score": 0.5},
    {"instance_id": 1, "label": "x", "score": float("nan")},
    {"instance_id": 1, "label": "x", "score": 0.5, "box_2d": (10.0, 0.0, 5.0, 1.0)},
    {"instance_id": 1, "label": "x", "score": 0.5, "center_3d": (0.0, 0.0, 0.0)},
    {"instance_id": 1, "label": "x", "score": 0.5, "center_3d": (0.0, 0.0, 0.0), "size_3d": (1.0, -1.0, 1.0)},
])
def test_bad_objects_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConversionError):
        DetectedObject(**kwargs)


def test_objects_from_core_results() -> None:
    instances = [NS(instance_id=4, label="box", score=0.8, box=(10, 5, 30, 15)),
                 NS(instance_id=6, label="cylinder", score=0.7, box=(0, 0, 2, 2))]
    objects_3d = [NS(instance_id=4, point_count=120, center=np.array([5.0, -1.4, -0.3]),
                     size=np.array([0.8, 0.8, 0.8]), yaw=0.3),
                  NS(instance_id=6, point_count=0, center=np.zeros(3), size=np.zeros(3), yaw=0.0)]
    objs = objects_from_frame(instances, objects_3d, frames_lost={6: 1})
    assert objs[0] == DetectedObject(4, "box", 0.8, box_2d=(10.0, 5.0, 30.0, 15.0),
                                     center_3d=(5.0, -1.4, -0.3), size_3d=(0.8, 0.8, 0.8), yaw=0.3)
    assert objs[1].center_3d is None and objs[1].frames_lost == 1 and not objs[1].visible
    assert [d["id"] for d in detection_2d_array(objs, HEADER)["detections"]] == ["4"]


def ros_result():
    try:
        from geometry_msgs.msg import Point, Pose, Quaternion, Vector3

        from sam_fusion.msg import Box2D, ObjectInstance, SegmentationResult
    except ImportError as exc:
        pytest.skip(f"ROS interfaces not importable ({exc}); source scripts/env.sh")
    result = SegmentationResult()
    result.header.frame_id = "camera_optical"
    result.header.stamp.sec, result.header.stamp.nanosec = 3, 4
    car = ObjectInstance(id=7, label="car", score=0.9, pixel_area=800,
                         box=Box2D(x_min=10.0, y_min=20.0, x_max=50.0, y_max=40.0), point_count=50,
                         box_center=Pose(position=Point(x=8.0, y=-1.0, z=0.5),
                                         orientation=Quaternion(z=math.sqrt(0.5), w=math.sqrt(0.5))),
                         box_size=Vector3(x=4.0, y=1.8, z=1.5))
    flat = ObjectInstance(id=3, label="person", score=0.75, pixel_area=400,
                          box=Box2D(x_min=100.0, y_min=10.0, x_max=120.0, y_max=80.0))
    result.objects = [flat, car]
    return result


def test_objects_from_a_segmentation_result_message() -> None:
    objs = {o.instance_id: o for o in objects_from_result(ros_result())}
    assert objs[3] == PERSON
    car = objs[7]
    assert car.box_2d == CAR.box_2d and car.yaw == pytest.approx(math.pi / 2)
    assert car.center_3d == CAR.center_3d and car.size_3d == pytest.approx(CAR.size_3d)
    assert header_dict(ros_result().header) == {"stamp": {"sec": 3, "nanosec": 4},
                                                "frame_id": "camera_optical"}


def test_fill_message_sets_nested_fields_and_sequences() -> None:
    try:
        from sam_fusion.msg import SegmentationResult

        from samfusion.ros.vision_detections import fill_message
    except ImportError as exc:
        pytest.skip(f"ROS interfaces not importable ({exc}); source scripts/env.sh")
    msg = fill_message(SegmentationResult(), {
        "header": {"stamp": {"sec": 9, "nanosec": 1}, "frame_id": "cam"},
        "source": "camera",
        "objects": [{"id": 5, "label": "car", "score": 0.5,
                     "box": {"x_min": 1.0, "y_min": 2.0, "x_max": 3.0, "y_max": 4.0},
                     "box_center": {"orientation": {"w": 1.0}}}],
    })
    assert (msg.header.stamp.sec, msg.header.frame_id, msg.source) == (9, "cam", "camera")
    assert [(o.id, o.label, o.box.x_max, o.box_center.orientation.w) for o in msg.objects] == [(5, "car", 3.0, 1.0)]
    with pytest.raises(ConversionError, match="no field 'bogus'"):
        fill_message(SegmentationResult(), {"bogus": 1})


def vision_msgs_or_skip():
    try:
        from samfusion.ros.vision_detections import vision_msgs_available
    except ImportError as exc:
        pytest.skip(f"rclpy not importable ({exc})")
    if not vision_msgs_available():
        pytest.skip("vision_msgs is not installed (optional: apt install ros-jazzy-vision-msgs)")


def test_missing_vision_msgs_is_a_clear_import_error() -> None:
    try:
        from samfusion.ros.vision_detections import detection2d_array_msg, vision_msgs_available
    except ImportError as exc:
        pytest.skip(f"rclpy not importable ({exc})")
    if vision_msgs_available():
        pytest.skip("vision_msgs is installed here")
    with pytest.raises(ImportError, match="vision_msgs is not installed"):
        detection2d_array_msg(detection_2d_array([CAR], HEADER))


def test_real_vision_msgs_detection2d_array() -> None:  # pragma: no cover - needs vision_msgs
    vision_msgs_or_skip()
    from samfusion.ros.vision_detections import detection2d_array_msg

    msg = detection2d_array_msg(detection_2d_array([CAR, PERSON], HEADER))
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.sec == 12
    assert [d.id for d in msg.detections] == ["3", "7"]
    car = msg.detections[1]
    assert car.results[0].hypothesis.class_id == "car"
    assert car.results[0].hypothesis.score == pytest.approx(0.9)
    assert (car.bbox.center.position.x, car.bbox.center.position.y) == (30.0, 30.0)
    assert (car.bbox.size_x, car.bbox.size_y) == (40.0, 20.0)


def test_real_vision_msgs_detection3d_array() -> None:  # pragma: no cover - needs vision_msgs
    vision_msgs_or_skip()
    from samfusion.ros.vision_detections import detection3d_array_msg

    msg = detection3d_array_msg(detection_3d_array([CAR], header_dict(1.5, "velodyne")))
    (car,) = msg.detections
    assert car.id == "7" and car.header.frame_id == "velodyne"
    assert car.bbox.center.position.x == 8.0 and car.bbox.size.y == pytest.approx(1.8)
    assert car.bbox.center.orientation.z == pytest.approx(math.sqrt(0.5))
    assert car.results[0].pose.pose.position.y == -1.0
