"""Six nuScenes cameras + one LiDAR sweep through the perception node over real DDS."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ros_harness import ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until, wait_for_match

pytestmark = [requires_ros, pytest.mark.ros]

if ROS_AVAILABLE:
    from sensor_msgs.msg import CameraInfo, CompressedImage, PointCloud2, PointField
    from std_msgs.msg import Header

    from sam_fusion.msg import Box2D, Prompt
    from samfusion.convert.pcd_io import read_nuscenes_bin
    from samfusion.convert.pointcloud2 import cloud_to_structured, structured_to_cloud
    from samfusion.geometry.calibration import load_nuscenes_calib
    from samfusion.geometry.camera_info import camera_model_to_camera_info
    from samfusion.pointcloud.objects3d import points_in_box
    from samfusion.ros.qos import PROMPT_QOS, RESULT_QOS, SENSOR_QOS

CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]


def test_six_cameras_label_one_sweep(shared_data):
    root = shared_data / "nuscenes_mini_sample"
    rigs = load_nuscenes_calib(root / "calib.json")
    calib = json.loads((root / "calib.json").read_text())
    annotations = json.loads((root / "annotations.json").read_text())
    names = annotations["categories"] if isinstance(annotations["categories"], list) else list(annotations["categories"])
    sweep = read_nuscenes_bin(next(root.glob("*LIDAR_TOP*.pcd.bin")))
    params = {"camera_names": CAMERAS, "image_transport": "compressed", "extrinsics_file": str(root / "calib.json"),
              "max_skew_s": 0.1, "cloud_wait_s": 3.0, "cleanup": False}
    with node_process("samfusion.ros.perception_node", "perception_six_cameras", params=params) as proc, \
            probe_node() as (node, executor):
        image_pubs = {c: node.create_publisher(CompressedImage, f"{c}/image_raw/compressed", SENSOR_QOS) for c in CAMERAS}
        info_pubs = {c: node.create_publisher(CameraInfo, f"{c}/camera_info", SENSOR_QOS) for c in CAMERAS}
        cloud_pub = node.create_publisher(PointCloud2, "points", SENSOR_QOS)
        prompt_pub = node.create_publisher(Prompt, "prompts", PROMPT_QOS)
        clouds: list = []
        node.create_subscription(PointCloud2, "points_labeled", clouds.append, RESULT_QOS)
        assert wait_for_match(executor, cloud_pub, 1, timeout=30) and wait_for_match(executor, prompt_pub, 1)
        assert all(wait_for_match(executor, p, 1, timeout=10) for p in image_pubs.values())
        next_id = 1
        for cam in CAMERAS:
            for inst in annotations["cam_instances"][cam]:
                x0, y0, x1, y1 = (float(v) for v in inst["bbox"])
                prompt_pub.publish(Prompt(target=cam, action=Prompt.ACTION_ADD, object_id=next_id,
                                          label=names[inst["bbox_label"]],
                                          boxes=[Box2D(x_min=x0, y_min=y0, x_max=x1, y_max=y1, positive=True)]))
                next_id += 1
        spin_until(executor, lambda: False, 1.0)
        out = None
        deadline = time.monotonic() + 90
        while out is None and time.monotonic() < deadline:
            base = node.get_clock().now()
            lidar_stamp = base.to_msg()
            for cam in CAMERAS:  # the real per-camera offsets of this sample (tens of ms)
                offset_ns = int((calib["cameras"][cam]["timestamp"] - calib["timestamp"]) * 1e9)
                from rclpy.time import Time

                stamp = Time(nanoseconds=base.nanoseconds + offset_ns).to_msg()
                header = Header(stamp=stamp, frame_id=cam)
                info_pubs[cam].publish(camera_model_to_camera_info(rigs[cam].camera_model, CameraInfo, header))
                msg = CompressedImage(header=header, format="jpeg")
                msg.data = (root / calib["cameras"][cam]["file"]).read_bytes()
                image_pubs[cam].publish(msg)
            cloud_pub.publish(structured_to_cloud(sweep, PointCloud2, PointField,
                                                  Header(stamp=lidar_stamp, frame_id="LIDAR_TOP")))
            if spin_until(executor, lambda: any(c.header.stamp == lidar_stamp for c in clouds), 20.0):
                candidate = next(c for c in clouds if c.header.stamp == lidar_stamp)
                if len(np.unique(cloud_to_structured(candidate)["instance"])) > 10:
                    out = candidate
        assert out is not None, proc.output()[-3000:]
        cloud = cloud_to_structured(out)
        assert cloud.dtype.names == ("x", "y", "z", "intensity", "ring", "label", "instance", "score")
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        in_any_box = np.zeros(len(xyz), bool)
        boxes_hit = 0
        instance = cloud["instance"]
        for ann in annotations["instances"]:
            x, y, z, length, width, height, yaw = ann["bbox_3d"]
            inside = points_in_box(xyz, np.array([x, y, z]), np.array([length, width, height]), yaw)
            in_any_box |= inside
            boxes_hit += bool((instance[inside] > 0).any())
        labeled = instance > 0
        assert boxes_hit >= 40  # of 69 annotated boxes (49 measured; many hold < 5 points)
        assert (labeled & in_any_box).sum() >= 0.6 * labeled.sum()  # 0.72 measured; no 3D cleanup here
        assert len(np.unique(instance[labeled])) >= 35  # 42 measured
        assert proc.alive()
