"""Plays a KITTI object folder as live sensors: image, camera_info, extrinsic, cloud, prompts.

Each frame: the prompts (CLEAR, then one box per labeled object, ids 1.. in label order) go
out first, then after ``prompt_lead_s`` the image, camera_info and cloud with one shared stamp.
The stamp -> frame id mapping is published on ``kitti_player/frames`` so recorders can match
results to ground truth. A timer drives a small state machine: no sleeping in callbacks.

With ``pace_topic`` set (e.g. ``points_labeled``) the player waits for a PointCloud2 carrying the
frame's stamp there before it sends the next frame's prompts, so a slow machine segments every
frame with its own prompts instead of dropping frames as stale (evaluation and demos want that;
a live robot does not wait). ``rate_hz`` stays the upper bound.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header, String

from sam_fusion.msg import Box2D, Prompt
from samfusion.convert.compressed import numpy_to_compressed
from samfusion.convert.image import numpy_to_image
from samfusion.convert.pointcloud2 import structured_to_cloud
from samfusion.geometry.camera_info import camera_model_to_camera_info
from samfusion.io.kitti import KittiFrame, kitti_frame_ids, prompts_from_labels, read_kitti_frame
from samfusion.ros.params import ParamSpec, declare_parameters
from samfusion.ros.qos import LATCHED_QOS, LOG_QOS, PROMPT_QOS, RESULT_QOS, SENSOR_QOS
from samfusion.ros.runtime import spin_node

__all__ = ["KittiPlayer", "main", "PLAYER_PARAMS", "default_data_dir"]


def default_data_dir() -> str:
    """The bundled frames: share/sam_fusion/data/kitti when installed, else the checkout's data/."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("sam_fusion")) / "data" / "kitti"
        if share.is_dir():
            return str(share)
    except (ImportError, LookupError, ValueError):
        pass
    return str(Path(__file__).resolve().parents[3] / "data" / "kitti")


PLAYER_PARAMS = (
    ParamSpec("data_dir", "", "KITTI object folder (image_2, velodyne, calib, label_2); empty = bundled frames"),
    ParamSpec("frames", [], "Frame ids to play (empty = all)", kind=str, array=True),
    ParamSpec("rate_hz", 1.0, "Frames per second", kind=float, min=0.01, max=100.0),
    ParamSpec("loop", False, "Start over after the last frame instead of exiting", kind=bool),
    ParamSpec("camera_name", "camera", "Camera stream name (topic prefix)"),
    ParamSpec("camera_frame", "camera_2_optical", "frame_id of images and camera_info"),
    ParamSpec("lidar_frame", "velodyne", "frame_id of the cloud"),
    ParamSpec("lidar_topic", "points", "PointCloud2 topic"),
    ParamSpec("prompt_topic", "prompts", "Prompt topic"),
    ParamSpec("image_transport", "raw", "raw Image or compressed (png) CompressedImage",
              choices=("raw", "compressed")),
    ParamSpec("publish_prompts", True, "Publish box prompts from the label files", kind=bool),
    ParamSpec("prompt_lead_s", 0.3, "Delay between a frame's prompts and its sensor data", kind=float,
              min=0.0, max=10.0),
    ParamSpec("wait_for_subscribers", 1, "Wait until the cloud topic has this many subscribers",
              kind=int, min=0, max=100),
    ParamSpec("start_timeout_s", 60.0, "Give up waiting for subscribers after this long", kind=float,
              min=0.0, max=3600.0),
    ParamSpec("pace_topic", "", "PointCloud2 topic whose message with the frame's stamp must arrive before the "
              "next frame (e.g. points_labeled); empty = play at rate_hz without waiting"),
    ParamSpec("pace_timeout_s", 30.0, "With pace_topic: go on to the next frame (warned) after this long",
              kind=float, min=0.1, max=3600.0),
)


class KittiPlayer(Node):
    """Publishes the KITTI frames of a folder on the camera, camera_info, LiDAR and prompt topics."""

    NODE_NAME = "kitti_player"  # default name, also used in start-up error messages

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **kwargs)
        self.p = declare_parameters(self, PLAYER_PARAMS)
        root = self.p["data_dir"] or default_data_dir()
        self.frame_ids = list(self.p["frames"]) or kitti_frame_ids(root)
        self.frames: list[KittiFrame] = [read_kitti_frame(root, f) for f in self.frame_ids]
        cam = self.p["camera_name"]
        if self.p["image_transport"] == "raw":
            self.image_pub = self.create_publisher(Image, f"{cam}/image_raw", SENSOR_QOS)
        else:
            self.image_pub = self.create_publisher(CompressedImage, f"{cam}/image_raw/compressed", SENSOR_QOS)
        self.info_pub = self.create_publisher(CameraInfo, f"{cam}/camera_info", SENSOR_QOS)
        self.extrinsic_pub = self.create_publisher(TransformStamped, f"{cam}/lidar_extrinsic", LATCHED_QOS)
        self.cloud_pub = self.create_publisher(PointCloud2, self.p["lidar_topic"], SENSOR_QOS)
        self.prompt_pub = self.create_publisher(Prompt, self.p["prompt_topic"], PROMPT_QOS)
        self.frames_pub = self.create_publisher(String, "kitti_player/frames", LOG_QOS)
        self.index = 0
        self.phase = "wait"
        self.next_time = time.monotonic()
        self.started = time.monotonic()
        self.finished = False
        self.results_missed = 0  # paced frames whose result did not come within pace_timeout_s
        self._awaiting: tuple[int, int] | None = None  # stamp of the paced frame not yet answered
        self._await_deadline = 0.0
        if self.p["pace_topic"]:
            self.create_subscription(PointCloud2, self.p["pace_topic"], self._on_result, RESULT_QOS)
        self.create_timer(0.02, self._tick)
        self.get_logger().info(f"playing {len(self.frames)} KITTI frames from {root} at {self.p['rate_hz']} Hz")

    def _tick(self) -> None:
        now = time.monotonic()
        if self.phase == "wait":
            if self.cloud_pub.get_subscription_count() >= self.p["wait_for_subscribers"]:
                self.phase, self.next_time = "prompts", now
            elif now - self.started > self.p["start_timeout_s"]:
                self.get_logger().error("no subscriber on the cloud topic; giving up")
                self.finished = True
            return
        if self.finished:
            return
        if self.phase == "result":
            if self._awaiting is not None and now < self._await_deadline:
                return
            if self._awaiting is not None:
                self.results_missed += 1
                self.get_logger().warning(
                    f"no message with stamp {self._awaiting[0]}.{self._awaiting[1]:09d} on "
                    f"'{self.p['pace_topic']}' within pace_timeout_s={self.p['pace_timeout_s']:g}; going on "
                    f"({self.results_missed} missed so far)")
                self._awaiting = None
            self._advance()
            return
        if now < self.next_time:
            return
        frame = self.frames[self.index]
        if self.phase == "prompts":
            if self.p["publish_prompts"]:
                self._publish_prompts(frame)
            self.phase, self.next_time = "sensors", now + self.p["prompt_lead_s"]
            return
        stamp = self._publish_sensors(frame)
        self.next_time = now + max(0.0, 1.0 / self.p["rate_hz"] - self.p["prompt_lead_s"])
        if self.p["pace_topic"]:
            self._awaiting = (stamp.sec, stamp.nanosec)
            self._await_deadline = now + self.p["pace_timeout_s"]
            self.phase = "result"
            return
        self._advance()

    def _advance(self) -> None:
        """On to the next frame's prompts (or finish); ``next_time`` keeps the rate bound."""
        self.index += 1
        if self.index >= len(self.frames):
            if not self.p["loop"]:
                self.finished = True
                self.get_logger().info("all frames played")
                return
            self.index = 0
        self.phase = "prompts"

    def _on_result(self, msg: PointCloud2) -> None:
        if self._awaiting == (msg.header.stamp.sec, msg.header.stamp.nanosec):
            self._awaiting = None

    def _publish_prompts(self, frame: KittiFrame) -> None:
        for update in prompts_from_labels(frame.labels, target=self.p["camera_name"]):
            msg = Prompt()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.p["camera_frame"]
            msg.target = update.target
            msg.action = int(update.action)
            msg.object_id = update.object_id
            msg.label = update.label
            msg.boxes = [Box2D(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max, positive=True)
                         for b in update.boxes]
            self.prompt_pub.publish(msg)

    def _publish_sensors(self, frame: KittiFrame) -> Any:
        """Extrinsic, camera_info, image, frame log and cloud with one stamp; returns the stamp."""
        stamp = self.get_clock().now().to_msg()
        cam_header = Header(stamp=stamp, frame_id=self.p["camera_frame"])
        lidar_header = Header(stamp=stamp, frame_id=self.p["lidar_frame"])
        model = frame.calib.camera_model
        t, q = frame.calib.T_cam_from_velo.to_translation_quaternion()
        ext = TransformStamped()
        ext.header = cam_header
        ext.child_frame_id = self.p["lidar_frame"]
        ext.transform.translation.x, ext.transform.translation.y, ext.transform.translation.z = map(float, t)
        (ext.transform.rotation.x, ext.transform.rotation.y, ext.transform.rotation.z,
         ext.transform.rotation.w) = map(float, q)
        self.extrinsic_pub.publish(ext)
        self.info_pub.publish(camera_model_to_camera_info(model, CameraInfo, cam_header))
        if self.p["image_transport"] == "raw":
            self.image_pub.publish(numpy_to_image(frame.image, "rgb8", Image, cam_header))
        else:
            self.image_pub.publish(numpy_to_compressed(frame.image, "png", CompressedImage, cam_header))
        self.frames_pub.publish(String(data=f"{frame.frame_id} {stamp.sec} {stamp.nanosec}"))
        self.cloud_pub.publish(structured_to_cloud(frame.cloud, PointCloud2, PointField, lidar_header))
        self.get_logger().info(f"frame {frame.frame_id}: {len(frame.cloud)} points, "
                               f"{len(frame.labels)} labels")
        return stamp


def _play(node: KittiPlayer) -> None:
    while rclpy.ok() and not node.finished:
        rclpy.spin_once(node, timeout_sec=0.05)
    end = time.monotonic() + 1.0  # let reliable messages drain before leaving
    while rclpy.ok() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)


def main(args: list[str] | None = None) -> None:
    spin_node(KittiPlayer, args, run=_play)


if __name__ == "__main__":
    main()
