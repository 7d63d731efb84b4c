"""Perception node: cameras + LiDAR + prompts in; segmentations, overlays, labeled cloud out.

Callbacks only convert-free bookkeeping (store the message, count, wake the worker); a worker
thread runs the pipeline: it applies queued prompts, segments the newest image of each camera,
pairs the pending cloud with the segmentation nearest in time (within ``max_skew_s``), labels
it and publishes. Stale frames are skipped and counted, never queued. Every bad input is
logged (throttled) with its reason, counted, and reported on /diagnostics; the node keeps going.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TransformStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sam_fusion.msg import Prompt, SegmentationResult
from samfusion.convert.compressed import compressed_to_rgb
from samfusion.convert.image import check_image_layout, image_to_rgb, numpy_to_image
from samfusion.convert.pointcloud2 import cloud_to_structured, labeled_cloud, xyz_array
from samfusion.errors import SamFusionError
from samfusion.geometry.camera_info import camera_info_to_model
from samfusion.geometry.transform import RigidTransform
from samfusion.pipeline.extrinsics import extrinsics_from_flat, load_extrinsics
from samfusion.pipeline.overlay import render_overlay
from samfusion.pipeline.perception import (
    FrameSegmentation,
    PerceptionPipeline,
    perception_config_from_flat,
)
from samfusion.pipeline.sync import CalibrationStamps, CameraBuffer, CloudSlot, Stamped, nearest_within
from samfusion.pointcloud.markers import markers_from_objects
from samfusion.ros.adapters import (
    markers_to_msg,
    points_3d_from_msg,
    prompt_from_msg,
    segmentation_to_msg,
    stamp_to_seconds,
)
from samfusion.ros.params import check_changes, declare_parameters
from samfusion.ros.perception_params import LIVE_PARAMS, PERCEPTION_PARAMS
from samfusion.ros.qos import LATCHED_QOS, PROMPT_QOS, RESULT_QOS, SENSOR_QOS
from samfusion.ros.runtime import spin_node
from samfusion.segmentation.prompts import PointPrompt, PromptUpdate

__all__ = ["PerceptionNode", "main"]


class PerceptionNode(Node):
    """See module docstring. Topics are relative so namespaces and remaps work as usual."""

    NODE_NAME = "sam_fusion_perception"  # default name, also used in start-up error messages

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **kwargs)
        self.params = declare_parameters(self, PERCEPTION_PARAMS)
        self.counters: Counter[str] = Counter()
        self._last_log: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self.camera_names: list[str] = list(self.params["camera_names"])
        self.range_stream: str = self.params["range_stream"]
        streams = self.camera_names + ([self.range_stream] if self.range_stream else [])
        if not streams or len(set(streams)) != len(streams):
            raise ValueError(f"camera_names (+ range_stream) must be unique and non-empty, got {streams}")
        self.range_config = self._range_config() if self.range_stream else None
        offsets = list(self.params["time_offsets_s"]) or [0.0] * len(self.camera_names)
        if len(offsets) != len(self.camera_names):
            raise ValueError(f"time_offsets_s has {len(offsets)} values for {len(self.camera_names)} cameras")
        self._time_offsets = dict(zip(self.camera_names, offsets))
        self._tf_buffer = self._make_tf_buffer() if self.params["use_tf"] else None

        self.config = perception_config_from_flat(self.params)
        self.pipeline: PerceptionPipeline | None = None
        self._camera_models: dict[str, Any] = {}
        self._extrinsics: dict[str, RigidTransform] = self._static_extrinsics()

        self._buffers = {name: CameraBuffer() for name in self.camera_names}
        self._segs: dict[str, deque[FrameSegmentation]] = {n: deque(maxlen=8) for n in self.camera_names}
        self._seg_headers: dict[int, Header] = {}
        self._image_sizes: dict[str, tuple[int, int]] = {}
        self._models: dict[str, tuple[float, Any]] = {}  # stamp, model: applied by the worker
        self._extrinsic_updates: dict[str, tuple[float, RigidTransform]] = {}
        self._calibration = CalibrationStamps()
        self._load_request: str | None = "load" if self.params["autostart"] else None
        self._load_result: tuple[bool, str] | None = None
        self._prompts: deque[tuple[PromptUpdate, Any]] = deque(maxlen=256)
        self._cloud = CloudSlot()
        self._lidar_frame = ""
        self._latency_ms: deque[float] = deque(maxlen=200)
        self._frames = 0
        self._started = time.monotonic()

        group = MutuallyExclusiveCallbackGroup()
        raw = self.params["image_transport"] == "raw"
        self._seg_pubs: dict[str, Any] = {}
        self._overlay_pubs: dict[str, Any] = {}
        for name in self.camera_names:
            if raw:
                self.create_subscription(Image, f"{name}/image_raw",
                                         lambda m, n=name: self._on_image(n, m), SENSOR_QOS,
                                         callback_group=group)
            else:
                self.create_subscription(CompressedImage, f"{name}/image_raw/compressed",
                                         lambda m, n=name: self._on_image(n, m), SENSOR_QOS,
                                         callback_group=group)
            self.create_subscription(CameraInfo, f"{name}/camera_info",
                                     lambda m, n=name: self._on_camera_info(n, m), SENSOR_QOS,
                                     callback_group=group)
            self.create_subscription(TransformStamped, f"{name}/lidar_extrinsic",
                                     lambda m, n=name: self._on_extrinsic(n, m), LATCHED_QOS,
                                     callback_group=group)
            self._seg_pubs[name] = self.create_publisher(SegmentationResult, f"{name}/segmentation", RESULT_QOS)
            if self.params["publish_overlay"]:
                self._overlay_pubs[name] = self.create_publisher(Image, f"{name}/overlay", RESULT_QOS)
        if self.range_stream:
            name = self.range_stream
            self._seg_pubs[name] = self.create_publisher(SegmentationResult, f"{name}/segmentation", RESULT_QOS)
            if self.params["publish_overlay"]:
                self._overlay_pubs[name] = self.create_publisher(Image, f"{name}/overlay", RESULT_QOS)
        self.create_subscription(PointCloud2, self.params["lidar_topic"], self._on_cloud, SENSOR_QOS,
                                 callback_group=group)
        self.create_subscription(Prompt, self.params["prompt_topic"], self._on_prompt, PROMPT_QOS,
                                 callback_group=group)
        self._cloud_pub = self.create_publisher(PointCloud2, self.params["labeled_cloud_topic"], RESULT_QOS)
        self._marker_pub = self.create_publisher(MarkerArray, self.params["markers_topic"], RESULT_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RESULT_QOS)
        self._detections = self._make_detection_publishers() if self.params["publish_detections"] else None
        self.create_timer(1.0, self._publish_diagnostics, callback_group=group)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        services = MutuallyExclusiveCallbackGroup()  # a slow model load must not stall the topics
        self.create_service(Trigger, "~/load_model", self._on_load, callback_group=services)
        self.create_service(Trigger, "~/unload_model", self._on_unload, callback_group=services)
        self._worker = threading.Thread(target=self._run, name="sam_fusion_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: backend={self.config.backend.backend} cameras={self.camera_names} "
            f"transport={self.params['image_transport']} lidar={self.params['lidar_topic']} "
            f"model={'loading' if self.params['autostart'] else 'not loaded (call ~/load_model)'}"
        )

    # ---- set-up ----------------------------------------------------------------------------
    def _range_config(self) -> Any:
        from samfusion.pointcloud.range_image import RangeImageConfig

        return RangeImageConfig(height=self.params["range_height"], width=self.params["range_width"],
                                fov_up_deg=self.params["range_fov_up_deg"],
                                fov_down_deg=self.params["range_fov_down_deg"],
                                use_ring_field=self.params["range_use_ring_field"])

    def _make_tf_buffer(self) -> Any:
        try:
            from tf2_ros import Buffer, TransformListener
        except ImportError as exc:
            raise ValueError("use_tf:=true needs tf2_ros (apt install ros-$ROS_DISTRO-tf2-ros)") from exc
        buffer = Buffer()
        self._tf_listener = TransformListener(buffer, self)
        return buffer

    def _update_extrinsics_from_tf(self, msg: PointCloud2) -> None:
        """T_camera_from_lidar from TF at the cloud's stamp, for every camera with a model."""
        from rclpy.duration import Duration
        from rclpy.time import Time

        for name in self.camera_names:
            model = self._camera_models.get(name)
            if model is None or not model.frame_id:
                continue
            try:
                tf = self._tf_buffer.lookup_transform(model.frame_id, msg.header.frame_id,
                                                      Time.from_msg(msg.header.stamp), Duration(seconds=0.05))
            except Exception as exc:  # noqa: BLE001 - tf2 raises several unrelated exception types
                self._reject("tf_lookup_errors", f"{model.frame_id} <- {msg.header.frame_id}: {exc}")
                continue
            t, q = tf.transform.translation, tf.transform.rotation
            transform = RigidTransform.from_translation_quaternion([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
            self._extrinsics[name] = transform
            if self.pipeline is not None:
                self.pipeline.set_extrinsic(name, transform)

    def _static_extrinsics(self) -> dict[str, RigidTransform]:
        transforms: dict[str, RigidTransform] = {}
        if self.params["extrinsics_file"]:
            transforms.update(load_extrinsics(self.params["extrinsics_file"],
                                              self.params["extrinsics_format"], self.camera_names))
        transforms.update(extrinsics_from_flat(self.params["extrinsics"], self.camera_names))
        return transforms

    # ---- model loading (configure / cleanup) ---------------------------------------------------
    def _on_load(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._request_model("load", response)

    def _on_unload(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._request_model("unload", response)

    def _request_model(self, what: str, response: Trigger.Response) -> Trigger.Response:
        """Hand the request to the worker (it owns the pipeline) and wait for the outcome."""
        with self._wake:
            self._load_request = what
            self._load_result = None
            self._wake.notify()
            deadline = time.monotonic() + 600.0
            while self._load_result is None and time.monotonic() < deadline and not self._stop:
                self._wake.wait(timeout=0.1)
            ok, message = self._load_result or (False, f"{what} did not finish")
        response.success, response.message = ok, message
        return response

    def _do_model_request(self, what: str) -> tuple[bool, str]:
        if what == "unload":
            if self.pipeline is None:
                return True, "no model was loaded"
            self.pipeline = None
            _free_accelerator_memory()
            return True, f"unloaded {self.config.backend.backend}"
        if self.pipeline is not None:
            return True, f"{self.pipeline.backend.name} already loaded"
        start = time.perf_counter()
        try:
            pipeline = PerceptionPipeline(self.config)
        except SamFusionError as exc:  # missing checkpoint, bad device: report, stay up
            self._reject("model_load_errors", str(exc))
            return False, str(exc)
        for name in self.camera_names + ([self.range_stream] if self.range_stream else []):
            pipeline.camera(name)
        for name, model in self._camera_models.items():
            pipeline.set_camera_model(name, model)
        for name, transform in self._extrinsics.items():
            pipeline.set_extrinsic(name, transform)
        self.pipeline = pipeline
        where = "the CPU (device is ignored)" if pipeline.backend.name == "classical" else self.config.backend.device
        message = f"loaded {pipeline.backend.name} on {where} in {time.perf_counter() - start:.1f} s"
        self.get_logger().info(message)
        return True, message

    def _on_set_parameters(self, params: list[Any]) -> Any:
        result = check_changes(PERCEPTION_PARAMS, params)
        if result.successful:
            for p in params:
                if p.name in LIVE_PARAMS:
                    self.params[p.name] = p.value
                    if p.name == "score_threshold":
                        self._set_score_threshold(float(p.value))
        return result

    def _set_score_threshold(self, value: float) -> None:
        from dataclasses import replace

        with self._lock:
            self.config = replace(self.config, tracker=replace(self.config.tracker, score_threshold=value))
            if self.pipeline is not None:
                for stream in self.pipeline.cameras.values():
                    stream.tracker.config = replace(stream.tracker.config, score_threshold=value)

    # ---- callbacks: store, count, wake -----------------------------------------------------
    def _reject(self, kind: str, reason: str) -> None:
        """Count a bad input and log why, at most once per kind every few seconds."""
        self.counters[kind] += 1
        now = time.monotonic()
        last, suppressed = self._last_log.get(kind, (-1e9, 0))
        if now - last >= float(self.params["log_throttle_s"]):
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            self.get_logger().warning(f"{kind}: {reason}{more}")
            self._last_log[kind] = (now, 0)
        else:
            self._last_log[kind] = (last, suppressed + 1)

    def _on_image(self, name: str, msg: Any) -> None:
        problem = ""
        if isinstance(msg, Image):  # a malformed frame must not push a good one out of the buffer
            try:
                check_image_layout(msg)
            except SamFusionError as exc:
                problem = str(exc)
        with self._wake:
            self.counters["images_received"] += 1
            if problem:
                self._reject("bad_image", f"camera '{name}': {problem}")
                return
            self._buffers[name].push(Stamped(stamp_to_seconds(msg.header.stamp), msg, arrival=time.monotonic()))
            self._wake.notify()

    def _on_camera_info(self, name: str, msg: CameraInfo) -> None:
        try:
            model = camera_info_to_model(msg)
        except SamFusionError as exc:
            self._reject("bad_camera_info", f"camera '{name}': {exc}")
            return
        with self._lock:
            self._models[name] = (stamp_to_seconds(msg.header.stamp), model)

    def _on_extrinsic(self, name: str, msg: TransformStamped) -> None:
        t, q = msg.transform.translation, msg.transform.rotation
        try:
            transform = RigidTransform.from_translation_quaternion([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
        except SamFusionError as exc:
            self._reject("bad_extrinsic", f"camera '{name}': {exc}")
            return
        with self._lock:
            self._extrinsic_updates[name] = (stamp_to_seconds(msg.header.stamp), transform)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self.counters["clouds_received"] += 1
        self._cloud.put(Stamped(stamp_to_seconds(msg.header.stamp), msg, arrival=time.monotonic()))
        with self._wake:
            self._wake.notify()

    def _on_prompt(self, msg: Prompt) -> None:
        try:
            update = prompt_from_msg(msg)
        except SamFusionError as exc:
            self._reject("bad_prompt", str(exc))
            return
        with self._wake:
            self._prompts.append((update, msg))
            self._wake.notify()

    # ---- worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait(timeout=0.05)
                if self._stop:
                    return
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if not self.context.ok():  # shutting down (Ctrl-C): publishers are gone
                    return
                self._reject("worker_errors", f"{type(exc).__name__}: {exc}")

    def _step(self) -> None:
        with self._lock:
            request, self._load_request = self._load_request, None
        if request is not None:
            result = self._do_model_request(request)
            with self._wake:
                self._load_result = result
                self._wake.notify_all()
        with self._lock:
            prompts: list[tuple[PromptUpdate, Any]] = []
            if self.pipeline is not None:  # without a model, prompts wait (bounded) for one
                prompts = list(self._prompts)
                self._prompts.clear()
            images = {n: b.take_newest_unprocessed() for n, b in self._buffers.items()}
        self._apply_calibration()
        if self.pipeline is None:
            skipped = sum(item is not None for item in images.values())
            if skipped:
                self.counters["frames_without_model"] += skipped
            self._maybe_label_cloud()
            return
        for update, msg in prompts:
            self._apply_prompt(update, msg)
        self._segment_all({n: item for n, item in images.items() if item is not None})
        self._maybe_label_cloud()

    def _apply_calibration(self) -> None:
        """Apply the CameraInfo and extrinsic messages that arrived since the last call."""
        with self._lock:
            models, self._models = self._models, {}
            extrinsics, self._extrinsic_updates = self._extrinsic_updates, {}
        for name, (stamp, model) in models.items():
            try:
                model.validate()
            except SamFusionError as exc:
                self._reject("bad_camera_info", f"camera '{name}': {exc}")
                continue
            self._camera_models[name] = model
            self._calibration.applied("camera_info", name, stamp)
            if self.pipeline is not None:
                self.pipeline.set_camera_model(name, model)
        for name, (stamp, transform) in extrinsics.items():
            self._extrinsics[name] = transform
            self._calibration.applied("extrinsic", name, stamp)
            if self.pipeline is not None:
                self.pipeline.set_extrinsic(name, transform)

    def _apply_prompt(self, update: PromptUpdate, msg: Prompt) -> None:
        try:
            if len(msg.points_3d):
                update = self._with_projected_points(update, msg)
            sizes = {n: s.model.image_size for n, s in self.pipeline.cameras.items() if s.model is not None}
            sizes.update(self._image_sizes)
            touched = self.pipeline.apply_prompt(update, sizes)
            self.counters["prompts_applied"] += 1
            self.get_logger().info(f"prompt {update.action.name} applied: {touched}")
        except SamFusionError as exc:
            self._reject("bad_prompt", str(exc))

    def _with_projected_points(self, update: PromptUpdate, msg: Prompt) -> PromptUpdate:
        from samfusion.geometry.projection import project_points
        from samfusion.errors import PromptError

        if not update.target:
            raise PromptError("3D point prompts need a target camera")
        pts, positive = points_3d_from_msg(msg)
        if update.target == self.range_stream:
            from samfusion.pipeline.lidar_only import points_3d_to_range_prompts

            if msg.header.frame_id != self._lidar_frame:
                raise PromptError(f"3D points for the LiDAR stream must be in the LiDAR frame "
                                  f"'{self._lidar_frame}', got '{msg.header.frame_id}'")
            extra = points_3d_to_range_prompts(pts, positive, self.range_config)
            return PromptUpdate(**{**update.__dict__, "points": update.points + extra})
        stream = self.pipeline.camera(update.target)
        frame = msg.header.frame_id
        model = stream.model
        if model is None:
            raise PromptError(f"camera '{update.target}' has no CameraInfo yet; cannot project 3D points")
        if frame == model.frame_id:
            transform = RigidTransform.identity()
        elif frame == self._lidar_frame and stream.T_cam_from_lidar is not None:
            transform = stream.T_cam_from_lidar
        else:
            raise PromptError(f"3D points in frame '{frame}': only the camera frame '{model.frame_id}' and "
                              f"the LiDAR frame '{self._lidar_frame}' are known")
        proj = project_points(pts, transform, model, min_depth=0.0)
        if not np.all(proj.valid):
            bad = pts[~proj.valid][0].tolist()
            raise PromptError(f"3D point {bad} does not project into camera '{update.target}'")
        extra = tuple(PointPrompt(float(u), float(v), bool(p)) for (u, v), p in zip(proj.uv, positive))
        return PromptUpdate(**{**update.__dict__, "points": update.points + extra})

    def _segment_all(self, images: dict[str, Stamped[Any]]) -> None:
        """Decode each camera's newest image, segment them together (one encoder batch with SAM)."""
        decoded: list[tuple[str, Stamped[Any], np.ndarray]] = []
        for name, item in images.items():
            try:
                msg = item.value
                rgb = image_to_rgb(msg) if isinstance(msg, Image) else compressed_to_rgb(msg)
                model = self.pipeline.camera(name).model
                if model is not None and model.image_size != (rgb.shape[1], rgb.shape[0]):
                    self.pipeline.set_camera_model(name, model.resized_to(rgb.shape[1], rgb.shape[0]))
            except SamFusionError as exc:
                self._reject("bad_image", f"camera '{name}': {exc}")
                continue
            decoded.append((name, item, rgb))
        if not decoded:
            return
        try:
            segs: list[FrameSegmentation | None] = list(
                self.pipeline.segment_many([(name, rgb, item.stamp) for name, item, rgb in decoded]))
        except SamFusionError:  # find the camera at fault; the others still get their results
            segs = []
            for name, item, rgb in decoded:
                try:
                    segs.append(self.pipeline.segment(name, rgb, item.stamp))
                except SamFusionError as exc:
                    self._reject("bad_image", f"camera '{name}': {exc}")
                    segs.append(None)
        for (name, item, rgb), seg in zip(decoded, segs):
            self._calibration.image_segmented(name, item.stamp)
            if seg is not None:
                self._image_sizes[name] = (rgb.shape[1], rgb.shape[0])  # only sizes of usable images
                self._publish_segmentation(name, item.value.header, rgb, seg)

    def _publish_segmentation(self, name: str, header: Header, rgb: np.ndarray, seg: FrameSegmentation) -> None:
        for reason in seg.rejected_prompts:
            self._reject("bad_prompt", f"camera '{name}': {reason}")
        self._segs[name].append(seg)
        self._seg_headers[id(seg)] = header
        self._prune_headers()
        self.counters["frames_segmented"] += 1
        self._latency_ms.append(seg.inference_ms)
        self._seg_pubs[name].publish(segmentation_to_msg(seg, header, self.pipeline.backend.name))
        if name in self._overlay_pubs:
            overlay = render_overlay(rgb, seg.id_image, seg.instances)
            self._overlay_pubs[name].publish(numpy_to_image(overlay, "rgb8", Image, header))

    def _prune_headers(self) -> None:
        alive = {id(s) for segs in self._segs.values() for s in segs}
        for key in [k for k in self._seg_headers if k not in alive]:
            del self._seg_headers[key]

    def _maybe_label_cloud(self) -> None:
        item = self._cloud.peek()
        if item is None:
            return
        self._apply_calibration()  # a frame's CameraInfo may arrive while its image is segmented
        skew = float(self.params["max_skew_s"])
        offsets = self._time_offsets
        matched = {n: nearest_within(list(self._segs[n]), item.stamp + offsets[n], skew)
                   for n in self.camera_names}
        waiting = any(
            m is None and nearest_within(list(self._buffers[n].images), item.stamp + offsets[n], skew) is not None
            for n, m in matched.items()
        )
        timed_out = time.monotonic() - item.arrival >= float(self.params["cloud_wait_s"])
        if any(m is None for m in matched.values()) and not timed_out and (waiting or not any(matched.values())):
            return
        # A paired camera whose CameraInfo / extrinsic has not arrived yet (topics race on the
        # first frame) would silently label nothing: wait for it, then say so.
        uncalibrated = [n for n, m in matched.items() if m is not None and self.pipeline is not None
                        and (self.pipeline.camera(n).model is None or self.pipeline.camera(n).T_cam_from_lidar is None)]
        # A driver that stamps CameraInfo (or the extrinsic) per frame: label with the frame's own.
        behind = {n: kinds for n, m in matched.items() if m is not None
                  and (kinds := self._calibration.behind(n, m.stamp))}
        if (uncalibrated or behind) and not timed_out:
            return
        if not self._cloud.take(item):
            return
        if uncalibrated:
            self._reject("clouds_missing_calibration", f"cameras {uncalibrated} have no CameraInfo or LiDAR "
                         f"extrinsic yet; their masks did not label the cloud at {item.stamp:.3f}")
        if behind:
            self._reject("clouds_stale_calibration", f"per-frame calibration {behind} (camera: kinds) of the "
                         f"frame did not arrive within cloud_wait_s; the cloud at {item.stamp:.3f} was "
                         f"labeled with the previous one")
        self._label_and_publish(item.value, [m for m in matched.values() if m is not None])

    def _label_and_publish(self, msg: PointCloud2, segs: list[FrameSegmentation]) -> None:
        start = time.perf_counter()
        try:
            structured = cloud_to_structured(msg)
            xyz = xyz_array(structured)
        except SamFusionError as exc:
            self._reject("bad_cloud", str(exc))
            return
        self._lidar_frame = msg.header.frame_id
        if self._tf_buffer is not None:
            self._update_extrinsics_from_tf(msg)
        if self.pipeline is None:
            n = len(xyz)
            self._cloud_pub.publish(labeled_cloud(msg, np.zeros(n, np.uint16), np.zeros(n, np.uint32),
                                                  np.zeros(n, np.float32), msg_cls=PointCloud2,
                                                  field_cls=PointField, header=msg.header))
            self.counters["clouds_without_model"] += 1
            return
        finite = np.isfinite(xyz).all(axis=1)
        clean_xyz = np.where(finite[:, None], xyz, 0.0)
        labels = self.pipeline.label_cloud(clean_xyz, segs)
        if self.range_stream:
            labels = self._merge_range_labels(msg, structured, clean_xyz, finite, labels, segs)
            segs = segs + [self._range_seg]
        instance = np.where(finite, labels.instance, 0).astype(np.uint32)
        label = np.where(finite, labels.label, 0).astype(np.uint16)
        score = np.where(finite, labels.score, 0).astype(np.float32)
        if not segs and not self.range_stream:
            self._reject("clouds_unlabeled", f"cloud at {stamp_to_seconds(msg.header.stamp):.3f} had no camera "
                         f"frame within max_skew_s={self.params['max_skew_s']}; published unlabeled")
        out = labeled_cloud(msg, label, instance, score, msg_cls=PointCloud2, field_cls=PointField,
                            header=msg.header)
        self._cloud_pub.publish(out)
        self._marker_pub.publish(markers_to_msg(markers_from_objects(labels.objects), msg.header))
        for seg in segs:  # results again, now with the 3D part
            header = self._seg_headers.get(id(seg), msg.header)
            self._seg_pubs[seg.camera].publish(
                segmentation_to_msg(seg, header, self.pipeline.backend.name, labels.objects, msg.header))
            if self._detections is not None:
                self._publish_detections(seg, header, labels.objects, msg.header)
        self.counters["clouds_labeled"] += 1
        self._latency_ms.append((time.perf_counter() - start) * 1e3)

    def _merge_range_labels(self, msg: PointCloud2, structured: np.ndarray, xyz: np.ndarray,
                            finite: np.ndarray, camera_labels: Any, segs: list[FrameSegmentation]) -> Any:
        """Segment the cloud's range image; camera labels win where both label a point."""
        from samfusion.pipeline.lidar_only import segment_cloud_lidar_only

        names = structured.dtype.names or ()
        intensity = next((structured[n] for n in ("intensity", "reflectivity") if n in names), None)
        ring = structured["ring"] if "ring" in names else None
        result = segment_cloud_lidar_only(
            self.pipeline, self.range_stream, np.where(finite[:, None], xyz, np.nan), self.range_config,
            intensity=None if intensity is None else np.asarray(intensity, np.float32),
            ring=ring, stamp=stamp_to_seconds(msg.header.stamp))
        seg = result.segmentation
        for reason in seg.rejected_prompts:
            self._reject("bad_prompt", f"stream '{self.range_stream}': {reason}")
        self._range_seg = seg
        self._seg_headers[id(seg)] = msg.header
        self._seg_pubs[self.range_stream].publish(
            segmentation_to_msg(seg, msg.header, self.pipeline.backend.name))
        if self.range_stream in self._overlay_pubs:
            overlay = render_overlay(result.rgb, seg.id_image, seg.instances)
            self._overlay_pubs[self.range_stream].publish(numpy_to_image(overlay, "rgb8", Image, msg.header))
        if not segs:
            return result.labels
        take = (camera_labels.instance == 0) & (result.labels.instance > 0)
        merged = self.pipeline.labels_from_instances(
            xyz, np.where(take, result.labels.raw_instance, camera_labels.raw_instance).astype(np.uint32),
            segs + [seg])
        return merged

    def _make_detection_publishers(self) -> dict[str, Any] | None:
        """vision_msgs Detection2DArray per camera and Detection3DArray, when vision_msgs exists."""
        from samfusion.ros.vision_detections import vision_msgs_available

        if not vision_msgs_available():
            self.get_logger().info("publish_detections: vision_msgs is not installed "
                                   "(apt install ros-$ROS_DISTRO-vision-msgs); not publishing detections")
            return None
        from vision_msgs.msg import Detection2DArray, Detection3DArray

        pubs: dict[str, Any] = {"3d": self.create_publisher(Detection3DArray, "detections_3d", RESULT_QOS)}
        for name in self.camera_names:
            pubs[name] = self.create_publisher(Detection2DArray, f"{name}/detections", RESULT_QOS)
        return pubs

    def _publish_detections(self, seg: FrameSegmentation, header: Header, objects: Any,
                            cloud_header: Header) -> None:
        from samfusion.ros.vision_detections import detection2d_array_msg, detection3d_array_msg
        from samfusion.vision_msgs_conversion import (
            detection_2d_array,
            detection_3d_array,
            header_dict,
            objects_from_frame,
        )

        detected = objects_from_frame(seg.instances, objects, seg.frames_lost)
        if seg.camera in self._detections:
            self._detections[seg.camera].publish(detection2d_array_msg(detection_2d_array(
                detected, header_dict(header.stamp, header.frame_id))))
        self._detections["3d"].publish(detection3d_array_msg(detection_3d_array(
            [d for d in detected if d.center_3d is not None],
            header_dict(cloud_header.stamp, cloud_header.frame_id))))

    # ---- diagnostics -----------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        counters = dict(self.counters)
        counters["images_skipped"] = sum(b.skipped for b in self._buffers.values())
        counters["clouds_dropped"] = self._cloud.dropped
        lat = sorted(self._latency_ms)
        status = DiagnosticStatus()
        status.name = f"{self.get_name()}: perception"
        status.hardware_id = self.config.backend.device
        errors = sum(v for k, v in counters.items() if k.startswith("bad_") or k == "worker_errors")
        status.level = DiagnosticStatus.WARN if errors else DiagnosticStatus.OK
        status.message = f"{errors} bad inputs" if errors else "ok"
        values = {"backend": self.config.backend.backend, "model_loaded": str(self.pipeline is not None),
                  "device": self.config.backend.device, "cameras": ",".join(self.camera_names),
                  **(_accelerator_memory(self.config.backend.device) if self.pipeline is not None else {}),
                  "latency_p50_ms": f"{lat[len(lat) // 2]:.1f}" if lat else "nan",
                  "latency_p95_ms": f"{lat[int(len(lat) * 0.95)]:.1f}" if lat else "nan",
                  **{k: str(v) for k, v in sorted(counters.items())}}
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)

    def destroy_node(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        self._worker.join(timeout=5.0)
        super().destroy_node()


def _free_accelerator_memory() -> None:
    """Return cached GPU memory after a model is dropped (only if torch is already in use)."""
    import gc
    import sys

    gc.collect()
    cuda = getattr(sys.modules.get("torch"), "cuda", None)
    if cuda is not None and cuda.is_available():
        cuda.empty_cache()


def _accelerator_memory(device: str) -> dict[str, str]:
    """GPU memory figures for diagnostics; empty on CPU or while torch is still importing."""
    import sys

    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if not device.startswith("cuda") or cuda is None or not cuda.is_available():
        return {}
    return {"gpu_memory_allocated_mb": f"{torch.cuda.memory_allocated() / 2**20:.0f}",
            "gpu_memory_reserved_mb": f"{torch.cuda.memory_reserved() / 2**20:.0f}"}


def main(args: list[str] | None = None) -> None:
    spin_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
