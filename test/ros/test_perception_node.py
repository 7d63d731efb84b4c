"""The perception node in its own process, driven over real DDS with a real KITTI frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ros_harness import ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until, wait_for_match

pytestmark = [requires_ros, pytest.mark.ros]

if ROS_AVAILABLE:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from std_msgs.msg import Header

    from sam_fusion.msg import Box2D, PixelPoint, Prompt, SegmentationResult
    from samfusion.convert.image import numpy_to_image
    from samfusion.convert.pointcloud2 import cloud_to_structured, structured_to_cloud
    from samfusion.geometry.camera_info import camera_model_to_camera_info
    from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
    from samfusion.pointcloud.kitti_boxes import kitti_box_to_velo, velo_from_rect
    from samfusion.pointcloud.objects3d import points_in_box
    from samfusion.ros.qos import LATCHED_QOS, PROMPT_QOS, RESULT_QOS, SENSOR_QOS

NODE = "samfusion.ros.perception_node"


class Rig:
    """Probe-side publishers and subscribers matching the node's default topics."""

    def __init__(self, node, executor) -> None:
        self.node, self.executor = node, executor
        self.image = node.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        self.info = node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        self.extrinsic = node.create_publisher(TransformStamped, "camera/lidar_extrinsic", LATCHED_QOS)
        self.cloud = node.create_publisher(PointCloud2, "points", SENSOR_QOS)
        self.prompt = node.create_publisher(Prompt, "prompts", PROMPT_QOS)
        self.clouds: list[PointCloud2] = []
        self.results: list[SegmentationResult] = []
        self.diagnostics: dict[str, str] = {}
        node.create_subscription(PointCloud2, "points_labeled", self.clouds.append, RESULT_QOS)
        node.create_subscription(SegmentationResult, "camera/segmentation", self.results.append, RESULT_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, RESULT_QOS)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if "perception" in status.name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def wait_ready(self) -> None:
        assert wait_for_match(self.executor, self.cloud, 1, timeout=30), "node never subscribed to points"
        assert wait_for_match(self.executor, self.prompt, 1, timeout=10)
        assert wait_for_match(self.executor, self.image, 1, timeout=10)

    def counter(self, key: str) -> int:
        return int(self.diagnostics.get(key, "0"))

    def send_prompts(self, frame) -> None:
        for update in prompts_from_labels(frame.labels, target="camera"):
            msg = Prompt(target="camera", action=int(update.action), object_id=update.object_id,
                         label=update.label)
            msg.boxes = [Box2D(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max, positive=True)
                         for b in update.boxes]
            self.prompt.publish(msg)

    def send_frame(self, frame, stamp) -> None:
        cam = Header(stamp=stamp, frame_id="camera_2_optical")
        lidar = Header(stamp=stamp, frame_id="velodyne")
        t, q = frame.calib.T_cam_from_velo.to_translation_quaternion()
        ext = TransformStamped(header=cam, child_frame_id="velodyne")
        ext.transform.translation.x, ext.transform.translation.y, ext.transform.translation.z = map(float, t)
        r = ext.transform.rotation
        r.x, r.y, r.z, r.w = map(float, q)
        self.extrinsic.publish(ext)
        self.info.publish(camera_model_to_camera_info(frame.calib.camera_model, CameraInfo, cam))
        self.image.publish(numpy_to_image(frame.image, "rgb8", Image, cam))
        self.cloud.publish(structured_to_cloud(frame.cloud, PointCloud2, PointField, lidar))

    def frame_until_labeled(self, frame, timeout: float = 60.0) -> PointCloud2:
        """Send the frame until its cloud comes back with labels.

        Sensor QoS is best effort and camera_info / image / cloud race each other on the first
        frame, so the first answer may be the (correctly) unlabeled cloud: send again.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stamp = self.node.get_clock().now().to_msg()
            self.send_frame(frame, stamp)
            if spin_until(self.executor, lambda: any(c.header.stamp == stamp for c in self.clouds), 3.0):
                out = next(c for c in self.clouds if c.header.stamp == stamp)
                if cloud_to_structured(out)["instance"].any():
                    return out
        raise AssertionError(f"no labeled cloud came back; diagnostics: {self.diagnostics}")


@pytest.fixture(scope="module")
def kitti_001(shared_data):
    return read_kitti_frame(shared_data / "kitti_object", "000001")


def _gt_masks(frame, xyz):
    t = velo_from_rect(frame.calib.R0_rect, frame.calib.Tr_velo_to_cam)
    kept = [lab for lab in frame.labels if lab.type != "DontCare"]
    return {i: points_in_box(xyz, *kitti_box_to_velo(lab, t)) for i, lab in enumerate(kept, start=1)}


def test_labels_a_real_kitti_frame_over_dds(kitti_001):
    with node_process(NODE, "perception_under_test", params={"cloud_wait_s": 1.0, "max_skew_s": 0.1}) as proc, \
            probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        rig.send_prompts(kitti_001)
        assert spin_until(executor, lambda: False, 0.5) is False  # let the prompts land first
        out = rig.frame_until_labeled(kitti_001)
        assert proc.alive()

        # Field layout: the source point (16 bytes) kept, then label/instance/score.
        fields = {f.name: (f.offset, f.datatype) for f in out.fields}
        assert fields == {"x": (0, PointField.FLOAT32), "y": (4, PointField.FLOAT32),
                          "z": (8, PointField.FLOAT32), "intensity": (12, PointField.FLOAT32),
                          "label": (16, PointField.UINT16), "instance": (20, PointField.UINT32),
                          "score": (24, PointField.FLOAT32)}
        assert out.point_step == 28 and out.width == len(kitti_001.cloud)
        assert out.header.frame_id == "velodyne"

        cloud = cloud_to_structured(out)
        np.testing.assert_array_equal(cloud["x"], kitti_001.cloud["x"])
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        gt = _gt_masks(kitti_001, xyz)
        instance = cloud["instance"]
        assert set(np.unique(instance)) == {0, 1, 2, 3}  # truck, car, cyclist
        for object_id in (1, 2):  # the truck and the car: most of their box points, few outside
            labeled = instance == object_id
            assert (labeled & gt[object_id]).sum() >= 0.8 * gt[object_id].sum()
            assert (labeled & gt[object_id]).sum() >= 0.9 * labeled.sum()
        # label ids follow first appearance: Truck=1, Car=2, Cyclist=3; score is the mask score
        np.testing.assert_array_equal(np.unique(cloud["label"][instance == 2]), [2])
        assert np.all(cloud["score"][instance == 0] == 0)

        spin_until(executor, lambda: any(r.header.stamp == out.header.stamp and r.objects
                                         and r.objects[0].point_count > 0 for r in rig.results), 5.0)
        result = next(r for r in rig.results if r.header.stamp == out.header.stamp and r.objects[0].point_count)
        assert result.header.frame_id == "camera_2_optical"
        assert (result.cloud_header.frame_id, result.cloud_header.stamp) == ("velodyne", out.header.stamp)
        assert [o.id for o in result.objects] == [1, 2, 3]
        assert [o.label for o in result.objects] == ["Truck", "Car", "Cyclist"]
        assert (result.instance_ids.encoding, result.instance_ids.width, result.instance_ids.height) == \
            ("mono16", 1242, 375)
        ids = np.frombuffer(bytes(result.instance_ids.data), np.uint16).reshape(375, 1242)
        truck = result.objects[0]
        assert ids[int((truck.box.y_min + truck.box.y_max) / 2), int((truck.box.x_min + truck.box.x_max) / 2)] == 1
        assert truck.pixel_area == int((ids == 1).sum())
        assert truck.point_count == int((instance == 1).sum())
        assert 55.0 < truck.centroid.x < 70.0  # the truck is about 63 m ahead


def test_bad_inputs_are_counted_and_the_node_keeps_going(kitti_001):
    with node_process(NODE, "perception_bad_inputs",
                      params={"cloud_wait_s": 1.0, "max_skew_s": 0.1, "log_throttle_s": 0.0}) as proc, \
            probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        stamp = node.get_clock().now().to_msg()
        header = Header(stamp=stamp, frame_id="camera_2_optical")
        for _ in range(3):  # best effort: send the barrage a few times
            truncated = numpy_to_image(kitti_001.image, "rgb8", Image, header)
            truncated.data = truncated.data[: len(truncated.data) // 2]
            rig.image.publish(truncated)
            weird = numpy_to_image(kitti_001.image[:, :, 0].copy(), "mono8", Image, header)
            weird.encoding = "rgb_fancy"
            rig.image.publish(weird)
            zero_p = camera_model_to_camera_info(kitti_001.calib.camera_model, CameraInfo, header)
            zero_p.p = [0.0] * 12
            zero_p.k = [0.0] * 9
            rig.info.publish(zero_p)
            liar = PointCloud2(header=Header(stamp=stamp, frame_id="velodyne"), height=1, width=4294967295,
                               point_step=16, row_step=16, is_dense=True,
                               fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                                       for i, n in enumerate("xyz")])
            rig.cloud.publish(liar)
            spin_until(executor, lambda: False, 0.3)
        rig.prompt.publish(Prompt(target="camera", action=Prompt.ACTION_REFINE, object_id=77,
                                  points=[PixelPoint(x=10.0, y=10.0, positive=True)]))
        rig.prompt.publish(Prompt(target="no_such_camera", action=Prompt.ACTION_CLEAR))
        rig.prompt.publish(Prompt(target="camera", action=9))

        assert spin_until(executor, lambda: rig.counter("bad_image") >= 2 and rig.counter("bad_cloud") >= 1
                          and rig.counter("bad_camera_info") >= 1 and rig.counter("bad_prompt") >= 3, 30.0), \
            rig.diagnostics
        assert proc.alive()
        # ... and good data still flows
        rig.send_prompts(kitti_001)
        spin_until(executor, lambda: False, 0.5)
        out = rig.frame_until_labeled(kitti_001)
        assert set(np.unique(cloud_to_structured(out)["instance"])) == {0, 1, 2, 3}
        # now that the image size is known, a click outside it is refused on arrival
        before = rig.counter("bad_prompt")
        rig.prompt.publish(Prompt(target="camera", action=Prompt.ACTION_ADD, object_id=0,
                                  points=[PixelPoint(x=5000.0, y=10.0, positive=True)]))
        assert spin_until(executor, lambda: rig.counter("bad_prompt") > before, 10.0)
        assert proc.alive()
        log = proc.output()
        assert "expected" in log and "bytes" in log  # truncated image: expected vs actual size
        assert "rgb_fancy" in log
        assert "4294967295" in log
        assert "unknown object id 77" in log
        assert "outside the 1242x375 image" in log
        assert "no_such_camera" in log


def test_starts_without_a_model_and_loads_it_on_demand(kitti_001):
    from std_srvs.srv import Trigger

    with node_process(NODE, "perception_on_demand", params={"autostart": False, "cloud_wait_s": 0.5}) as proc, \
            probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        assert spin_until(executor, lambda: rig.diagnostics.get("model_loaded") == "False", 15.0)
        rig.send_prompts(kitti_001)  # queued until the model is there
        spin_until(executor, lambda: False, 0.5)
        stamp = node.get_clock().now().to_msg()
        rig.send_frame(kitti_001, stamp)
        assert spin_until(executor, lambda: any(c.header.stamp == stamp for c in rig.clouds), 15.0)
        unlabeled = next(c for c in rig.clouds if c.header.stamp == stamp)
        assert not cloud_to_structured(unlabeled)["instance"].any()
        assert spin_until(executor, lambda: rig.counter("clouds_without_model") >= 1, 10.0)

        load = node.create_client(Trigger, "/perception_on_demand/load_model")
        assert load.wait_for_service(timeout_sec=10.0)
        future = load.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 60.0)
        assert future.result().success, future.result().message
        assert future.result().message.startswith("loaded classical on the CPU")
        out = rig.frame_until_labeled(kitti_001)  # the queued prompts were applied on load
        assert set(np.unique(cloud_to_structured(out)["instance"])) == {0, 1, 2, 3}

        unload = node.create_client(Trigger, "/perception_on_demand/unload_model")
        future = unload.call_async(Trigger.Request())
        assert spin_until(executor, future.done, 30.0) and future.result().success
        assert spin_until(executor, lambda: rig.diagnostics.get("model_loaded") == "False", 15.0)
        assert proc.alive()


def test_missing_checkpoint_is_reported_and_the_node_stays_up(tmp_path):
    with node_process(NODE, "perception_no_weights",
                      params={"backend": "sam2", "checkpoint": str(tmp_path / "nothing_here")}) as proc, \
            probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        assert spin_until(executor, lambda: rig.counter("model_load_errors") >= 1, 60.0), rig.diagnostics
        assert rig.diagnostics["model_loaded"] == "False"
        assert proc.alive()
        assert "nothing_here" in proc.output()


def test_lidar_only_stream_labels_a_cloud_without_any_camera(shared_data):
    from samfusion.io.kitti import KITTI_PROMPT_CLASSES
    from samfusion.pointcloud.range_image import RangeImageConfig, project_box_to_range_image

    frame = read_kitti_frame(shared_data / "kitti_object", "000002")
    config = RangeImageConfig.velodyne_hdl64e(width=1024)
    t = velo_from_rect(frame.calib.R0_rect, frame.calib.Tr_velo_to_cam)
    misc = next(lab for lab in frame.labels if lab.type in KITTI_PROMPT_CLASSES)
    center, size, yaw = kitti_box_to_velo(misc, t)
    x0, y0, x1, y1 = map(float, project_box_to_range_image(center, size, yaw, config))
    params = {"camera_names": [], "range_stream": "lidar", "range_width": 1024, "cloud_wait_s": 0.0}
    with node_process(NODE, "perception_lidar_only", params=params) as proc, probe_node() as (node, executor):
        cloud_pub = node.create_publisher(PointCloud2, "points", SENSOR_QOS)
        prompt_pub = node.create_publisher(Prompt, "prompts", PROMPT_QOS)
        clouds: list = []
        results: list = []
        node.create_subscription(PointCloud2, "points_labeled", clouds.append, RESULT_QOS)
        node.create_subscription(SegmentationResult, "lidar/segmentation", results.append, RESULT_QOS)
        assert wait_for_match(executor, cloud_pub, 1, timeout=30) and wait_for_match(executor, prompt_pub, 1)
        prompt_pub.publish(Prompt(target="lidar", action=Prompt.ACTION_ADD, object_id=4, label="Misc",
                                  boxes=[Box2D(x_min=x0, y_min=y0, x_max=x1, y_max=y1, positive=True)]))
        spin_until(executor, lambda: False, 0.5)
        deadline = time.monotonic() + 60
        out = None
        while out is None and time.monotonic() < deadline:
            stamp = node.get_clock().now().to_msg()
            cloud_pub.publish(structured_to_cloud(frame.cloud, PointCloud2, PointField,
                                                  Header(stamp=stamp, frame_id="velodyne")))
            if spin_until(executor, lambda: any(c.header.stamp == stamp for c in clouds), 3.0):
                out = next(c for c in clouds if c.header.stamp == stamp)
        assert out is not None, proc.output()
        cloud = cloud_to_structured(out)
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        gt = points_in_box(xyz, center, size, yaw)
        labeled = cloud["instance"] == 4
        assert gt.sum() == 1346
        assert (labeled & gt).sum() >= 300 and (labeled & gt).sum() >= 0.95 * labeled.sum()
        assert spin_until(executor, lambda: any(r.header.stamp == out.header.stamp for r in results), 5.0)
        result = next(r for r in results if r.header.stamp == out.header.stamp)
        assert (result.source, result.instance_ids.width, result.instance_ids.height) == ("lidar", 1024, 64)
        assert [o.id for o in result.objects] == [4]
        assert proc.alive()


def test_use_tf_without_tf2_ros_fails_fast_with_the_package_to_install():
    import importlib.util

    if importlib.util.find_spec("tf2_ros") is not None:
        pytest.skip("tf2_ros is installed here; see test_extrinsics_from_tf")
    with node_process(NODE, "perception_tf_missing", params={"use_tf": True}) as proc:
        deadline = time.monotonic() + 30
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not proc.alive()
        assert "use_tf:=true needs tf2_ros" in proc.output()


@pytest.mark.skipif(not ROS_AVAILABLE or __import__("importlib").util.find_spec("tf2_ros") is None,
                    reason="tf2_ros is not installable from pip wheels here; runs in an apt ROS 2 install")
def test_extrinsics_from_tf(kitti_001):
    from tf2_ros import StaticTransformBroadcaster

    with node_process(NODE, "perception_tf", params={"use_tf": True, "cloud_wait_s": 1.0}) as proc, \
            probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        t, q = kitti_001.calib.T_cam_from_velo.to_translation_quaternion()
        tf = TransformStamped(child_frame_id="velodyne")
        tf.header.frame_id = "camera_2_optical"
        tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = map(float, t)
        r = tf.transform.rotation
        r.x, r.y, r.z, r.w = map(float, q)
        StaticTransformBroadcaster(node).sendTransform(tf)
        rig.extrinsic = node.create_publisher(TransformStamped, "unused_extrinsic", LATCHED_QOS)
        rig.send_prompts(kitti_001)
        out = rig.frame_until_labeled(kitti_001)
        assert set(np.unique(cloud_to_structured(out)["instance"])) == {0, 1, 2, 3}
        assert proc.alive()
