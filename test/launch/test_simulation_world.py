"""The Gazebo world, the ros_gz_bridge configuration and the simulation's perception parameters
agree with each other and with the perception node's defaults.

The camera <- LiDAR extrinsic in config/sim/perception_sim.yaml is recomputed here from the SDF
sensor poses, and every object is checked to be inside the camera image and the LiDAR's field.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from launch_support import REPO_ROOT
from samfusion.geometry.transform import RigidTransform

SIM = REPO_ROOT / "config" / "sim"
SDF = SIM / "sam_fusion_world.sdf"
BRIDGE = SIM / "ros_gz_bridge.yaml"
PARAMS = SIM / "perception_sim.yaml"
NODE_SOURCE = (REPO_ROOT / "src" / "samfusion" / "ros" / "perception_node.py").read_text()
# ROS body frame -> ROS optical frame (z forward, x right, y down)
OPTICAL_FROM_BODY = RigidTransform.from_rotation_translation(
    [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]], [0.0, 0.0, 0.0])


def world() -> ET.Element:
    root = ET.parse(SDF).getroot()
    version = tuple(int(v) for v in root.get("version", "0").split("."))
    assert root.tag == "sdf" and version >= (1, 9)  # <gz_frame_id>, <lidar>, optical_frame_id
    (w,) = root.findall("world")
    return w


def pose(element: ET.Element) -> RigidTransform:
    """An SDF <pose> (x y z roll pitch yaw, relative to the parent) as a transform."""
    text = element.findtext("pose") or "0 0 0 0 0 0"
    values = [float(v) for v in text.split()]
    assert len(values) == 6 and element.find("pose").get("relative_to") is None  # type: ignore[union-attr]
    return RigidTransform.from_translation_rpy(values[:3], values[3:])


def robot() -> tuple[ET.Element, ET.Element, ET.Element, ET.Element]:
    model = next(m for m in world().findall("model") if m.get("name") == "sam_robot")
    (link,) = model.findall("link")
    sensors = {s.get("type"): s for s in link.findall("sensor")}
    assert set(sensors) == {"camera", "gpu_lidar"}
    return model, link, sensors["camera"], sensors["gpu_lidar"]


def sim_params() -> dict:
    return yaml.safe_load(PARAMS.read_text())["/**"]["ros__parameters"]


def perception_defaults() -> dict:
    try:
        from samfusion.ros.perception_params import PERCEPTION_PARAMS
    except ImportError as exc:
        pytest.skip(f"rclpy is not importable ({exc}); source scripts/env.sh")
    return {s.name: s.default for s in PERCEPTION_PARAMS}


def test_world_has_the_systems_sensors_need() -> None:
    plugins = {p.get("name"): p for p in world().findall("plugin")}
    assert plugins["gz::sim::systems::Sensors"].get("filename") == "gz-sim-sensors-system"
    assert plugins["gz::sim::systems::Sensors"].findtext("render_engine") == "ogre2"
    assert plugins["gz::sim::systems::Physics"].get("filename") == "gz-sim-physics-system"
    assert plugins["gz::sim::systems::SceneBroadcaster"].get("filename") == "gz-sim-scene-broadcaster-system"
    assert plugins["gz::sim::systems::UserCommands"].get("filename") == "gz-sim-user-commands-system"


def test_robot_carries_a_camera_and_a_3d_lidar() -> None:
    model, link, camera, lidar = robot()
    assert model.findtext("static") == "true" and link.get("name") == "base_link"
    scan = lidar.find("lidar/scan")
    assert scan is not None
    assert int(scan.findtext("vertical/samples")) >= 16  # a 3D LiDAR, not a planar scanner
    assert int(scan.findtext("horizontal/samples")) >= 360
    assert float(lidar.findtext("lidar/range/max")) >= 30
    assert camera.findtext("camera/image/format") == "R8G8B8"  # rgb8, what the node expects
    for sensor in (camera, lidar):
        assert sensor.findtext("always_on") == "true" and float(sensor.findtext("update_rate")) > 0
        assert sensor.findtext("topic", "").startswith("/sam_robot/")
    # same rate: the two sensors render at the same sim times, so stamps pair within max_skew_s
    assert camera.findtext("update_rate") == lidar.findtext("update_rate")


def test_objects_to_prompt_for_are_named_primitives() -> None:
    objects = [m for m in world().findall("model") if m.get("name") not in ("ground_plane", "sam_robot")]
    assert len(objects) >= 3
    for model in objects:
        assert re.fullmatch(r"[a-z]+_[a-z]+", model.get("name", ""))
        geometry = model.find("link/visual/geometry")
        assert geometry is not None and geometry[0].tag in ("box", "cylinder")


def extrinsic_from_sdf() -> RigidTransform:
    _, _, camera, lidar = robot()  # both on base_link: the link and model poses cancel
    return OPTICAL_FROM_BODY @ pose(camera).inverse() @ pose(lidar)


def test_sim_extrinsic_is_the_one_of_the_sdf_poses() -> None:
    values = sim_params()["extrinsics"]
    assert len(values) == 7
    stored = RigidTransform.from_translation_quaternion(values[:3], values[3:])
    assert stored.allclose(extrinsic_from_sdf(), atol=1e-6)


def test_every_object_is_seen_by_the_camera_and_the_lidar() -> None:
    model, link, camera, lidar = robot()
    world_from_lidar = pose(model) @ pose(link) @ pose(lidar)
    cam = camera.find("camera")
    width, height = int(cam.findtext("image/width")), int(cam.findtext("image/height"))
    fx = (width / 2.0) / math.tan(float(cam.findtext("horizontal_fov")) / 2.0)
    values = sim_params()["extrinsics"]
    cam_from_lidar = RigidTransform.from_translation_quaternion(values[:3], values[3:])
    v_min = float(lidar.findtext("lidar/scan/vertical/min_angle"))
    v_max = float(lidar.findtext("lidar/scan/vertical/max_angle"))
    for model_el in world().findall("model"):
        if model_el.get("name") in ("ground_plane", "sam_robot"):
            continue
        center_world = pose(model_el).translation
        in_lidar = world_from_lidar.inverse().apply(center_world[None, :])[0]
        rng = float(np.linalg.norm(in_lidar))
        elevation = math.asin(in_lidar[2] / rng)
        assert 2.0 < rng < float(lidar.findtext("lidar/range/max")), model_el.get("name")
        assert v_min <= elevation <= v_max, model_el.get("name")
        x, y, z = cam_from_lidar.apply(in_lidar[None, :])[0]
        assert z > 1.0, model_el.get("name")
        u, v = fx * x / z + width / 2.0, fx * y / z + height / 2.0
        assert 0 <= u < width and 0 <= v < height, (model_el.get("name"), u, v)


def bridge() -> dict[str, dict]:
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list)
    keys = {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"}
    for entry in entries:
        assert set(entry) == keys and entry["direction"] == "GZ_TO_ROS"
    return {e["ros_topic_name"]: e for e in entries}


def test_bridge_topics_are_the_perception_node_inputs() -> None:
    p = perception_defaults()
    camera = p["camera_names"][0]
    entries = bridge()
    assert set(entries) == {"/clock", f"{camera}/image_raw", f"{camera}/camera_info", p["lidar_topic"]}
    types = {name: (e["ros_type_name"], e["gz_type_name"]) for name, e in entries.items()}
    assert types == {
        "/clock": ("rosgraph_msgs/msg/Clock", "gz.msgs.Clock"),
        f"{camera}/image_raw": ("sensor_msgs/msg/Image", "gz.msgs.Image"),
        f"{camera}/camera_info": ("sensor_msgs/msg/CameraInfo", "gz.msgs.CameraInfo"),
        p["lidar_topic"]: ("sensor_msgs/msg/PointCloud2", "gz.msgs.PointCloudPacked"),
    }
    assert p["image_transport"] == "raw"  # the bridge carries sensor_msgs/Image
    # what the node subscribes to, by type and topic
    assert 'create_subscription(Image, f"{name}/image_raw"' in NODE_SOURCE
    assert 'create_subscription(CameraInfo, f"{name}/camera_info"' in NODE_SOURCE
    assert 'create_subscription(PointCloud2, self.params["lidar_topic"]' in NODE_SOURCE


def test_bridge_gz_topics_are_the_sdf_sensor_topics() -> None:
    _, _, camera, lidar = robot()
    entries = {e["gz_type_name"]: e["gz_topic_name"] for e in bridge().values()}
    image_topic = camera.findtext("topic")
    assert entries["gz.msgs.Image"] == image_topic
    # gz-sensors publishes camera_info beside the image topic, points under the lidar topic
    assert entries["gz.msgs.CameraInfo"] == image_topic.rsplit("/", 1)[0] + "/camera_info"
    assert entries["gz.msgs.PointCloudPacked"] == lidar.findtext("topic") + "/points"
    assert entries["gz.msgs.Clock"] == "/clock"


def test_frames_on_the_ros_side() -> None:
    _, _, camera, lidar = robot()
    assert lidar.findtext("gz_frame_id") == "velodyne"
    assert camera.findtext("camera/optical_frame_id") == "camera_optical"  # image + camera_info
    assert sim_params()["camera_names"] == perception_defaults()["camera_names"]


def test_simulation_docs_quote_the_same_extrinsic() -> None:
    docs = (REPO_ROOT / "docs" / "simulation.md").read_text()
    line = next(l for l in docs.splitlines() if l.startswith("extrinsics: ["))
    assert yaml.safe_load(line)["extrinsics"] == sim_params()["extrinsics"]
