"""The offline loop over a recorded bag: pair clouds with images, run the pipeline, write a bag.

Same core as the perception node (:class:`PerceptionPipeline`), different scheduling: offline
nothing is dropped. Pass 1 reads only header stamps and pairs each cloud with, per camera, the
image nearest in time (image stamp minus the camera's time offset) within ``max_skew_s``
(:func:`plan_pairs`). Pass 2 copies every input message to the output, segments every image in
order (prompts from the bag and from the schedule applied as they come), labels each cloud
once its paired images are segmented, and writes:

* ``<prefix>/<camera>/segmentation`` (sam_fusion/SegmentationResult; with the 3D part of the last
  cloud paired with that image), ``<prefix>/<camera>/overlay`` (sensor_msgs/Image rgb8),
* ``<prefix>/points_labeled`` (PointCloud2: input fields + label, instance, score) and
  ``<prefix>/objects`` (MarkerArray), stamped like their inputs.

A cloud without any camera image within the skew is still written, unlabeled, and counted
(``clouds_unlabeled``; per camera ``unpaired``). Bad messages are counted and skipped.

Output safety (:func:`atomic_output`): everything is written under a hidden staging directory in
the output's parent and renamed to the final path only when complete, so an interrupted run
leaves no partial output at the final path; the staging directory is removed on any exception
(and a stale one of a killed run is removed by the next run). A rerun overwrites a finished
output (replaced only once the new one is complete); ``resume`` skips inputs whose output exists.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence

import numpy as np

from samfusion.errors import ConfigError, PromptError, SamFusionError
from samfusion.geometry.transform import RigidTransform

__all__ = ["RunOptions", "RunStats", "Progress", "atomic_output", "plan_pairs", "process_bag"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a bag is processed (the pipeline's own settings live in PerceptionConfig)."""

    max_skew_s: float = 0.05
    # camera -> expected camera stamp minus LiDAR stamp (s), removed before pairing (the node's time_offsets_s)
    time_offsets: Mapping[str, float] = field(default_factory=dict)
    overlays: bool = True
    output_prefix: str = ""
    seed: int | None = 0  # OpenCV's RNG seed (GrabCut in the classical backend); None = leave it
    progress: bool = True

    def validate(self) -> RunOptions:
        if not 0.0 <= self.max_skew_s <= 10.0:
            raise ConfigError(f"max_skew_s {self.max_skew_s} must be in [0, 10]")
        if self.output_prefix and not self.output_prefix.startswith("/"):
            raise ConfigError(f"output prefix '{self.output_prefix}' must start with '/'")
        return self


@dataclass
class RunStats:
    """Counters of one input; ``unpaired[camera]`` = clouds that camera had no image for."""

    counters: Counter = field(default_factory=Counter)
    unpaired: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    skipped: bool = False

    KEYS = ("images", "images_segmented", "clouds", "clouds_labeled", "clouds_unlabeled", "points_labeled",
            "prompts_applied", "prompts_skipped", "segmentations_written")
    WARN_FIRST = 5  # skipped prompts are all counted; the first few are also printed

    def skip_prompts(self, reasons: list[str], where: str) -> None:
        """Count stored prompts a frame could not use (a box outside a smaller image, say)."""
        for reason in reasons:
            self.counters["prompts_skipped"] += 1
            if self.counters["prompts_skipped"] <= self.WARN_FIRST:
                print(f"samfusion process: {where}: {reason}", file=sys.stderr)

    def as_dict(self) -> dict[str, Any]:
        counts = {**{k: 0 for k in self.KEYS}, **self.counters}
        return {**dict(sorted(counts.items())), "unpaired": dict(sorted(self.unpaired.items())),
                "seconds": round(self.seconds, 3), "skipped": self.skipped}


class Progress:
    """Plain-text progress bar with frames/s on stderr (redrawn in place on a terminal)."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream: IO[str] | None = None) -> None:
        self.label, self.total, self.enabled = label, max(total, 0), enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = self.frames = 0
        self._start = self._last = time.monotonic()
        self._last_decile = -1

    def update(self, done: int = 1, frames: int = 0) -> None:
        self.done += done
        self.frames += frames
        now = time.monotonic()
        decile = 10 * self.done // self.total if self.total else 10
        if self.enabled and ((self.tty and now - self._last >= 0.2) or (not self.tty and decile > self._last_decile)):
            self._draw(now, end="" if self.tty else "\n")
            self._last, self._last_decile = now, decile

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(24 * share) + "." * (24 - int(24 * share))
        eta = (elapsed / share - elapsed) if share > 0 else float("nan")
        return (f"{self.label} [{bar}] {100 * share:3.0f}% {self.done}/{self.total} msgs "
                f"{self.frames / elapsed:5.1f} frames/s eta {eta:4.0f} s")

    def _draw(self, now: float, end: str) -> None:
        self.stream.write(("\r" if self.tty else "") + self.line(now) + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic(), "\n")


# ---------------------------------------------------------------------------------- output safety
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a staging path next to ``final``; rename it to ``final`` when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.partial-"
    for stale in final.parent.glob(prefix + "*"):
        pid = stale.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=final.parent))
    try:
        yield stage / final.name
        if final.exists() or final.is_symlink():
            os.replace(final, stage / ".previous")
        os.replace(stage / final.name, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# ---------------------------------------------------------------------------------- pairing
def plan_pairs(image_stamps: Mapping[str, Sequence[float]], cloud_stamps: Sequence[float], max_skew_s: float,
               time_offsets: Mapping[str, float] | None = None) -> list[dict[str, int]]:
    """For each cloud: camera -> index of its image nearest in time within ``max_skew_s``.

    Each camera's offset (expected camera stamp minus LiDAR stamp) is subtracted from its image
    stamps first, as the perception node does with ``time_offsets_s``; ties go to the earlier image;
    cameras without an image in range are absent from the cloud's dict.
    """
    offsets = time_offsets or {}
    clouds = np.asarray(cloud_stamps, dtype=np.float64)
    plans: list[dict[str, int]] = [{} for _ in range(len(clouds))]
    for camera, stamps in image_stamps.items():
        shifted = np.asarray(stamps, dtype=np.float64) - float(offsets.get(camera, 0.0))
        if shifted.size == 0:
            continue
        order = np.argsort(shifted, kind="stable")
        ordered = shifted[order]
        pos = np.searchsorted(ordered, clouds)
        for k, stamp in enumerate(clouds):
            candidates = [j for j in (int(pos[k]) - 1, int(pos[k])) if 0 <= j < ordered.size]
            # nearest; on a tie the image that came first in the input
            best = min(candidates, key=lambda j: (abs(ordered[j] - stamp), int(order[j])))
            if abs(ordered[best] - stamp) <= max_skew_s:
                plans[k][camera] = int(order[best])
    return plans


# ---------------------------------------------------------------------------------- the loop
@dataclass
class _Held:
    seg: Any
    header: Any
    time_ns: int
    remaining: int
    objects: list = field(default_factory=list)


class _BagJob:
    """State of one bag run (see module docstring)."""

    def __init__(self, reader: Any, writer: Any, pipeline: Any, selection: Any, schedule: Any,
                 extrinsics: Mapping[str, RigidTransform], options: RunOptions, stats: RunStats) -> None:
        from samfusion.offline.bag_messages import StaticTransforms

        self.reader, self.writer, self.pipeline, self.sel = reader, writer, pipeline, selection
        self.schedule, self.options, self.stats = schedule, options, stats
        self.store = writer.store
        self.roles = selection.role()
        self.cameras = [c.name for c in selection.cameras]
        self.tf = StaticTransforms()
        self.fixed_extrinsics = dict(extrinsics)
        for name, transform in extrinsics.items():
            pipeline.set_extrinsic(name, transform)
        self.image_index: Counter = Counter()
        self.frames: dict[str, str] = {}
        self.lidar_frame = ""
        self.held: dict[tuple[str, int], _Held] = {}
        self.pending: list[tuple[list[tuple[str, int]], int, Any]] = []
        self.waiting_3d: dict[str, list[bytes]] = {}  # 3D-click prompts of cameras without CameraInfo yet
        self.uses: Counter = Counter()
        self.plan: list[dict[str, int]] = []
        self._warned: Counter = Counter()

    # ---- pass 1 --------------------------------------------------------------------------
    def make_plan(self) -> int:
        from samfusion.offline.bags import header_stamp

        stamps: dict[str, list[float]] = {c: [] for c in self.cameras}
        clouds: list[float] = []
        topics = [t for t, (kind, _) in self.roles.items() if kind in ("image", "cloud")]
        for conn, t, raw in self.reader.messages(topics):
            kind, camera = self.roles[conn.topic]
            try:
                stamp = header_stamp(raw)
            except SamFusionError:
                stamp = t * 1e-9
            (stamps[camera] if kind == "image" else clouds).append(stamp)
        self.plan = plan_pairs(stamps, clouds, self.options.max_skew_s, self.options.time_offsets)
        for pairs in self.plan:
            self.uses.update(pairs.items())
        return sum(len(s) for s in stamps.values()) + len(clouds)

    # ---- pass 2 --------------------------------------------------------------------------
    def run(self, progress: Progress) -> None:
        self.writer.copy_connections(self.reader.connections)
        cloud_index = 0
        for conn, t, raw in self.reader.messages():
            if self.writer.write_raw(conn, t, raw):
                self.stats.counters["messages_copied"] += 1
            role = self.roles.get(conn.topic)
            if role is None:
                continue
            kind, camera = role
            if kind == "image":
                self._on_image(camera, conn.msgtype, t, raw)
                progress.update(1, frames=1)
            elif kind == "cloud":
                self._on_cloud(cloud_index, t, raw)
                cloud_index += 1
                progress.update(1)
            elif kind == "info":
                self._guard("bad_camera_infos", self._on_info, camera, raw)
            elif kind == "prompt":
                self._guard("bad_prompts", self._on_prompt, raw)
            elif kind == "tf":
                self._guard("bad_tf", lambda r: self.tf.add_message(self.reader.deserialize(r, conn.msgtype)), raw)
            self._label_ready()
        for key in list(self.held):  # images no cloud could use any more
            self._write_segmentation(key)
        for camera, waiting in self.waiting_3d.items():
            self.stats.counters["bad_prompts"] += len(waiting)
            print(f"samfusion process: {len(waiting)} prompt(s) for camera '{camera}' were never applied: "
                  "its 3D clicks need a CameraInfo, and none came", file=sys.stderr)

    def _guard(self, counter: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SamFusionError as exc:
            self.stats.counters[counter] += 1
            if self._warned[counter] < 5:
                self._warned[counter] += 1
                print(f"samfusion process: {counter.replace('_', ' ')}: {exc}", file=sys.stderr)
            return None

    def _topic(self, *parts: str) -> str:
        return "/".join([self.options.output_prefix.rstrip("/")] + [p.strip("/") for p in parts])

    def _on_info(self, camera: str, raw: bytes) -> None:
        from samfusion.geometry.camera_info import camera_info_to_model

        msg = self.reader.deserialize(raw, "sensor_msgs/msg/CameraInfo")
        model = camera_info_to_model(msg)
        self.frames[camera] = str(msg.header.frame_id).lstrip("/") or model.frame_id
        self.pipeline.set_camera_model(camera, model)
        self.stats.counters["camera_infos"] += 1

    def _on_prompt(self, raw: bytes) -> None:
        from samfusion.offline.bag_messages import prompt_from_message

        msg = self.reader.deserialize(raw, "sam_fusion/msg/Prompt")
        update = prompt_from_message(msg)
        stream = self.pipeline.cameras.get(update.target)
        if stream is not None and (self.waiting_3d.get(update.target) or (len(msg.points_3d) and stream.model is None)):
            # 3D clicks wait for the camera's CameraInfo; later prompts to that camera keep their order
            self.waiting_3d.setdefault(update.target, []).append(raw)
            return
        if len(msg.points_3d):
            update = self._project_3d_points(update, msg)
        self._apply(update)

    def _apply(self, update: Any) -> None:
        sizes = {c: s.model.image_size for c, s in self.pipeline.cameras.items() if s.model is not None}
        self.pipeline.apply_prompt(update, sizes)
        self.stats.counters["prompts_applied"] += 1

    def _project_3d_points(self, update: Any, msg: Any) -> Any:
        from samfusion.geometry.projection import project_points
        from samfusion.offline.bag_messages import points_3d_of
        from samfusion.segmentation.prompts import PointPrompt, PromptUpdate

        if not update.target:
            raise PromptError("3D point prompts need a target camera")
        stream = self.pipeline.camera(update.target)
        if stream.model is None:
            raise PromptError(f"camera '{update.target}' has no CameraInfo yet; cannot project 3D points")
        frame = str(msg.header.frame_id).lstrip("/")
        cam_frame = self.frames.get(update.target, stream.model.frame_id)
        if frame == cam_frame:
            transform = RigidTransform.identity()
        elif frame == self.lidar_frame and stream.T_cam_from_lidar is not None:
            transform = stream.T_cam_from_lidar
        else:
            transform = self.tf.lookup(cam_frame, frame)
            if transform is None:
                raise PromptError(f"3D points in frame '{frame}' cannot be related to camera frame '{cam_frame}'")
        pts, positive = points_3d_of(msg)
        proj = project_points(pts, transform, stream.model, min_depth=0.0)
        if not np.all(proj.valid):
            raise PromptError(f"3D point {pts[~proj.valid][0].tolist()} does not project into camera '{update.target}'")
        extra = tuple(PointPrompt(float(u), float(v), bool(p)) for (u, v), p in zip(proj.uv, positive))
        return PromptUpdate(**{**update.__dict__, "points": update.points + extra})

    def _on_image(self, camera: str, msgtype: str, t: int, raw: bytes) -> None:
        index = self.image_index[camera]
        self.image_index[camera] += 1
        self.stats.counters["images"] += 1
        seg_hdr = self._guard("bad_images", self._segment, camera, msgtype, index, t, raw)
        if seg_hdr is None:
            return
        seg, hdr = seg_hdr
        self.stats.counters["images_segmented"] += 1
        uses = self.uses.get((camera, index), 0)
        self.held[(camera, index)] = _Held(seg, hdr, t, uses)
        if uses == 0:
            self._write_segmentation((camera, index))

    def _segment(self, camera: str, msgtype: str, index: int, t: int, raw: bytes) -> tuple[Any, Any]:
        from samfusion.convert.compressed import compressed_to_rgb
        from samfusion.convert.image import image_to_rgb
        from samfusion.offline.bag_messages import image_message
        from samfusion.pipeline.overlay import render_overlay

        if self.pipeline.camera(camera).model is not None:
            for prompt in self.waiting_3d.pop(camera, []):
                self._guard("bad_prompts", self._on_prompt, prompt)
        msg = self.reader.deserialize(raw, msgtype)
        rgb = image_to_rgb(msg) if msgtype.endswith("/Image") else compressed_to_rgb(msg)
        size = (rgb.shape[1], rgb.shape[0])
        if msg.header.frame_id:
            self.frames.setdefault(camera, str(msg.header.frame_id))
        stream = self.pipeline.camera(camera)
        if stream.model is not None and stream.model.image_size != size:
            self.pipeline.set_camera_model(camera, stream.model.resized_to(*size))
        if self.schedule:
            self.stats.counters["prompts_applied"] += self.schedule.before_frame(self.pipeline, camera, index, size)
        seg = self.pipeline.segment(camera, rgb, float(msg.header.stamp.sec) + msg.header.stamp.nanosec * 1e-9)
        self.stats.skip_prompts(seg.rejected_prompts, f"camera '{camera}' image {index}")
        if self.options.overlays:
            overlay = render_overlay(rgb, seg.id_image, seg.instances)
            self.writer.write(self._topic(camera, "overlay"), "sensor_msgs/msg/Image", t,
                              image_message(self.store, overlay, "rgb8", msg.header))
        return seg, msg.header

    def _on_cloud(self, index: int, t: int, raw: bytes) -> None:
        self.stats.counters["clouds"] += 1
        pairs = self.plan[index] if index < len(self.plan) else {}
        for camera in self.cameras:
            if camera not in pairs:
                self.stats.unpaired[camera] += 1
        self.pending.append((sorted(pairs.items()), t, raw))

    def _label_ready(self) -> None:
        still = []
        for pairs, t, raw in self.pending:
            if all(self.image_index[c] > i for c, i in pairs):
                self._label(pairs, t, raw)
            else:
                still.append((pairs, t, raw))
        self.pending = still

    def _label(self, pairs: list[tuple[str, int]], t: int, raw: bytes) -> None:
        keys = [k for k in pairs if k in self.held]
        objects = self._guard("bad_clouds", self._label_cloud, [self.held[k].seg for k in keys], t, raw)
        for key in keys:
            held = self.held[key]
            held.remaining -= 1
            if objects is not None:
                held.objects = objects
            if held.remaining <= 0:
                self._write_segmentation(key)

    def _resolve_extrinsics(self) -> None:
        for camera in self.cameras:
            if camera in self.fixed_extrinsics or not self.lidar_frame or camera not in self.frames:
                continue
            transform = self.tf.lookup(self.frames[camera], self.lidar_frame)
            if transform is not None:
                self.pipeline.set_extrinsic(camera, transform)

    def _label_cloud(self, segs: list[Any], t: int, raw: bytes) -> list:
        from samfusion.convert.pointcloud2 import cloud_to_structured, xyz_array
        from samfusion.offline.bag_messages import labeled_cloud_message, markers_message
        from samfusion.pointcloud.markers import markers_from_objects

        msg = self.reader.deserialize(raw, "sensor_msgs/msg/PointCloud2")
        xyz = xyz_array(cloud_to_structured(msg))
        self.lidar_frame = str(msg.header.frame_id).lstrip("/")
        self._resolve_extrinsics()
        usable = []
        for seg in segs:
            stream = self.pipeline.camera(seg.camera)
            if stream.model is None or stream.T_cam_from_lidar is None:
                self.stats.counters["camera_not_calibrated"] += 1
                if self._warned["calib" + seg.camera] == 0:
                    self._warned["calib" + seg.camera] += 1
                    print(f"samfusion process: camera '{seg.camera}' has no " +
                          ("CameraInfo" if stream.model is None else "LiDAR extrinsic (give --extrinsics or "
                           "record /tf_static)") + "; its images do not label clouds", file=sys.stderr)
            else:
                usable.append(seg)
        finite = np.isfinite(xyz).all(axis=1)
        labels = self.pipeline.label_cloud(np.where(finite[:, None], xyz, 0.0), usable)
        instance = np.where(finite, labels.instance, 0).astype(np.uint32)
        label = np.where(finite, labels.label, 0).astype(np.uint16)
        score = np.where(finite, labels.score, 0).astype(np.float32)
        self.stats.counters["clouds_labeled" if usable else "clouds_unlabeled"] += 1
        self.stats.counters["points_labeled"] += int(np.count_nonzero(instance))
        self.writer.write(self._topic("points_labeled"), "sensor_msgs/msg/PointCloud2", t,
                          labeled_cloud_message(self.store, msg, label, instance, score))
        self.writer.write(self._topic("objects"), "visualization_msgs/msg/MarkerArray", t,
                          markers_message(self.store, markers_from_objects(labels.objects), msg.header))
        return labels.objects

    def _write_segmentation(self, key: tuple[str, int]) -> None:
        from samfusion.offline.bag_messages import segmentation_message

        held = self.held.pop(key)
        msg = segmentation_message(self.store, held.seg, held.header, self.pipeline.backend.name, held.objects)
        self.writer.write(self._topic(key[0], "segmentation"), "sam_fusion/msg/SegmentationResult",
                          held.time_ns, msg)
        self.stats.counters["segmentations_written"] += 1


def process_bag(source: str | Path, output: Path, pipeline: Any, *, cameras: Sequence[Any] = (),
                lidar: str | None = None, prompt_topics: Sequence[str] | None = None, schedule: Any = None,
                extrinsics: Mapping[str, RigidTransform] | None = None, storage: Any = None,
                options: RunOptions = RunOptions()) -> RunStats:
    """Process one bag into a new bag at ``output`` (written atomically); see module docstring."""
    from samfusion.offline.bags import BagReader, BagWriter, select_topics
    from samfusion.offline.prompts_file import PromptSchedule

    options.validate()
    if options.seed is not None:
        import cv2

        cv2.setRNGSeed(int(options.seed))
    stats = RunStats()
    start = time.monotonic()
    with BagReader(source) as reader:
        selection = select_topics(reader.topic_types, cameras=cameras, lidar=lidar, prompts=prompt_topics)
        names = [c.name for c in selection.cameras]
        unknown = sorted((set(options.time_offsets) | set(extrinsics or {})) - set(names))
        if unknown:
            raise ConfigError(f"time offsets / extrinsics name camera(s) {unknown} that are not inputs; cameras: {names}")
        schedule = schedule or PromptSchedule()
        schedule.check_cameras(names)
        for name in names:
            pipeline.camera(name)
        with atomic_output(output) as staged:
            with BagWriter(staged, storage or reader.storage, reader.store) as writer:
                job = _BagJob(reader, writer, pipeline, selection, schedule, extrinsics or {}, options, stats)
                total = job.make_plan()
                progress = Progress(Path(source).name, total, enabled=options.progress)
                try:
                    job.run(progress)
                finally:
                    progress.close()
                stats.seconds = time.monotonic() - start
                writer.set_custom_data("samfusion", json.dumps(
                    {"source": str(source), "cameras": names, "lidar": selection.lidar, **stats.as_dict()}))
    return stats
