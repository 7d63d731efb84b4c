"""Camera + LiDAR perception pipeline: segment images, label the cloud, build 3D objects.

Pure core (no rclpy): the perception node and ``samfusion`` offline commands both drive it.
One pipeline holds one loaded backend and one :class:`ObjectTracker` per camera; instance ids
are unique across the cameras of a pipeline. Labeling a cloud uses every camera segmentation
passed in (the caller pairs them by time); points seen by several cameras follow the rule of
:func:`samfusion.pointcloud.labeling.label_points_multi`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from samfusion.errors import CalibrationError, ConfigError, PromptError
from samfusion.geometry.calibration import CameraRig
from samfusion.geometry.camera_model import CameraModel
from samfusion.geometry.transform import RigidTransform
from samfusion.pipeline.labels import LabelMap
from samfusion.segmentation.base import (
    Instance,
    SegmentationBackend,
    check_image,
    instances_to_id_image,
)
from samfusion.segmentation.config import BackendConfig, TrackerConfig
from samfusion.segmentation.prompts import PromptAction, PromptUpdate
from samfusion.segmentation.tracking import IdAllocator, ObjectTracker

__all__ = [
    "PerceptionConfig",
    "CameraStream",
    "FrameSegmentation",
    "CloudLabeling",
    "PerceptionPipeline",
]


@dataclass(frozen=True)
class PerceptionConfig:
    """Everything the pipeline needs besides data; filled from ROS parameters or YAML."""

    backend: BackendConfig = field(default_factory=BackendConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    min_depth_m: float = 0.5
    occlusion_radius_px: int = 2
    occlusion_depth_tolerance_m: float = 0.5
    cleanup: bool = True
    cleanup_eps_m: float = 0.6
    cleanup_min_points: int = 3
    class_names: tuple[str, ...] = ()
    labeling_backend: str = "numpy"  # "torch": label_points_multi_torch (CUDA when available)

    def validate(self) -> PerceptionConfig:
        self.backend.validate()
        self.tracker.validate()
        if self.min_depth_m < 0:
            raise ConfigError(f"min_depth_m {self.min_depth_m} must be >= 0")
        if not 0 <= self.occlusion_radius_px <= 32:
            raise ConfigError(f"occlusion_radius_px {self.occlusion_radius_px} must be in [0, 32]")
        if self.occlusion_depth_tolerance_m <= 0:
            raise ConfigError("occlusion_depth_tolerance_m must be > 0")
        if self.cleanup_eps_m <= 0 or self.cleanup_min_points < 1:
            raise ConfigError("cleanup_eps_m must be > 0 and cleanup_min_points >= 1")
        if self.labeling_backend not in ("numpy", "torch"):
            raise ConfigError(f"labeling_backend must be 'numpy' or 'torch', got {self.labeling_backend!r}")
        return self


@dataclass
class CameraStream:
    """One camera: its tracker, its latest camera model and its extrinsic to the LiDAR."""

    name: str
    tracker: ObjectTracker
    model: CameraModel | None = None
    T_cam_from_lidar: RigidTransform | None = None

    def rig(self) -> CameraRig:
        if self.model is None:
            raise CalibrationError(f"camera '{self.name}' has no camera model (no CameraInfo yet)")
        if self.T_cam_from_lidar is None:
            raise CalibrationError(f"camera '{self.name}' has no LiDAR extrinsic")
        return CameraRig(name=self.name, camera_model=self.model, T_cam_from_lidar=self.T_cam_from_lidar)


@dataclass
class FrameSegmentation:
    """The segmentation of one camera frame."""

    camera: str
    stamp: float
    instances: list[Instance]
    id_image: np.ndarray
    frames_lost: dict[int, int]
    inference_ms: float
    rejected_prompts: list[str] = field(default_factory=list)

    @property
    def scores(self) -> dict[int, float]:
        return {i.instance_id: float(i.score) for i in self.instances}

    @property
    def labels(self) -> dict[int, str]:
        return {i.instance_id: i.label for i in self.instances}


@dataclass
class CloudLabeling:
    """Per-point results for one cloud plus the 3D objects built from them."""

    instance: np.ndarray  # (N,) uint32, 0 = none
    label: np.ndarray  # (N,) uint16 class id from the pipeline's LabelMap, 0 = none
    score: np.ndarray  # (N,) float32
    camera_index: np.ndarray  # (N,) int16 index into `cameras`, -1 = none
    cameras: list[str]
    objects: list  # list[samfusion.pointcloud.objects3d.Object3D]
    raw_instance: np.ndarray  # before 3D cleanup, for diagnostics and evaluation


class PerceptionPipeline:
    """See module docstring. Not thread-safe: the caller serialises calls (the node holds a lock)."""

    def __init__(self, config: PerceptionConfig, backend: SegmentationBackend | None = None) -> None:
        self.config = config.validate()
        if backend is None:
            from samfusion.segmentation.registry import create_backend

            backend = create_backend(config.backend)
        self.backend = backend
        self.ids = IdAllocator()
        self.labels = LabelMap(config.class_names)
        self.cameras: dict[str, CameraStream] = {}
        self.batched_encode_ms = 0.0  # time of the last batched image-encoder call (segment_many)

    # ---- cameras and prompts -------------------------------------------------------------------
    def camera(self, name: str) -> CameraStream:
        stream = self.cameras.get(name)
        if stream is None:
            tracker = ObjectTracker(self.backend, self.config.tracker, ids=self.ids)
            stream = self.cameras[name] = CameraStream(name=name, tracker=tracker)
        return stream

    def set_camera_model(self, name: str, model: CameraModel) -> None:
        self.camera(name).model = model.validate()

    def set_extrinsic(self, name: str, T_cam_from_lidar: RigidTransform) -> None:
        self.camera(name).T_cam_from_lidar = T_cam_from_lidar

    def apply_prompt(self, update: PromptUpdate,
                     image_sizes: Mapping[str, tuple[int, int]] | None = None) -> dict[str, list[int]]:
        """Apply a prompt to its target camera (or every camera when target is empty).

        Returns the touched object ids per camera. An ADD without an id to several cameras uses
        one fresh id everywhere so the object keeps one id across cameras.
        """
        if update.target:
            if update.target not in self.cameras:
                raise PromptError(
                    f"prompt target '{update.target}' is not a camera of this node; "
                    f"cameras: {sorted(self.cameras)}"
                )
            targets = [update.target]
        else:
            targets = sorted(self.cameras)
            if not targets:
                raise PromptError("no camera streams exist yet to apply the prompt to")
        sizes = image_sizes or {}
        if (len(targets) > 1 and update.action == PromptAction.ADD and update.object_id == 0
                and (update.points or update.boxes)):
            shared = self.ids.fresh()
            update = PromptUpdate(**{**update.__dict__, "object_id": shared})
        touched: dict[str, list[int]] = {}
        errors: list[str] = []
        for name in targets:
            try:
                touched[name] = self.cameras[name].tracker.apply(update, sizes.get(name))
            except PromptError as exc:
                errors.append(f"{name}: {exc}")
        if errors and not touched:
            raise PromptError("; ".join(errors))
        return touched

    # ---- frames ------------------------------------------------------------------------------
    def segment_many(self, frames: Sequence[tuple[str, np.ndarray, float]]) -> list[FrameSegmentation]:
        """Segment one frame of each of several cameras: ``(name, image, stamp)`` each.

        With a SAM backend that can batch (``encode_many``), the frames of every camera that has
        prompts go through the image encoder in one call; results equal ``segment`` per camera.
        """
        features: list[object | None] = [None] * len(frames)
        encode_many = getattr(self.backend, "encode_many", None)
        batch = [i for i, (name, image, _) in enumerate(frames)
                 if self.camera(name).tracker.accepts_features
                 and not self.camera(name).tracker.prompt_set().is_empty()]
        if encode_many is not None and len(batch) > 1:
            import torch

            images = [frames[i][1] for i in batch]
            for image in images:
                check_image(image)
            start = time.perf_counter()
            with self.backend.lock, torch.inference_mode():  # type: ignore[attr-defined]
                encoded = encode_many(images)
            self.batched_encode_ms = (time.perf_counter() - start) * 1e3
            for i, feats in zip(batch, encoded):
                features[i] = feats
        return [self.segment(name, image, stamp, features=f)
                for (name, image, stamp), f in zip(frames, features)]

    def segment(self, name: str, image: np.ndarray, stamp: float = 0.0,
                features: object | None = None) -> FrameSegmentation:
        """Segment one frame of camera ``name`` with its active prompts."""
        height, width = check_image(image)
        stream = self.camera(name)
        start = time.perf_counter()
        step = stream.tracker.step(image, features)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        for inst in step.instances:
            self.labels.id_for(inst.label)
        id_image = instances_to_id_image(step.instances, height, width)
        _clip_to_visible(step.instances, id_image)
        instances = [inst for inst in step.instances if inst.area > 0]  # fully covered by others
        return FrameSegmentation(camera=name, stamp=stamp, instances=instances,
                                 id_image=id_image, frames_lost=step.frames_lost,
                                 inference_ms=elapsed_ms, rejected_prompts=step.rejected)

    def label_cloud(self, xyz: np.ndarray, segmentations: Sequence[FrameSegmentation]) -> CloudLabeling:
        """Label LiDAR points (N, 3, LiDAR frame) from the given camera segmentations."""
        from samfusion.geometry.projection import OcclusionConfig
        from samfusion.pointcloud.labeling import label_points_multi

        xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
        n = xyz.shape[0]
        cams = [s for s in segmentations if self.camera(s.camera).model is not None
                and self.camera(s.camera).T_cam_from_lidar is not None]
        names = [s.camera for s in cams]
        if n == 0 or not cams:
            empty_u32 = np.zeros(n, np.uint32)
            return CloudLabeling(instance=empty_u32, label=np.zeros(n, np.uint16),
                                 score=np.zeros(n, np.float32), camera_index=np.full(n, -1, np.int16),
                                 cameras=names, objects=[], raw_instance=empty_u32.copy())
        occlusion = OcclusionConfig(radius_px=self.config.occlusion_radius_px,
                                    depth_tolerance=self.config.occlusion_depth_tolerance_m)
        inputs = [(self.camera(s.camera).rig(), s.id_image, s.scores) for s in cams]
        if self.config.labeling_backend == "torch":  # large clouds on a GPU
            from samfusion.pointcloud.labeling_torch import label_points_multi_torch

            labels = label_points_multi_torch(xyz, inputs, occlusion=occlusion, min_depth=self.config.min_depth_m)
        else:
            labels = label_points_multi(xyz, inputs, occlusion=occlusion, min_depth=self.config.min_depth_m)
        return self.labels_from_instances(xyz, labels.instance.astype(np.uint32), cams,
                                          depth=labels.depth,
                                          camera_index=labels.camera_index.astype(np.int16))

    def labels_from_instances(self, xyz: np.ndarray, raw: np.ndarray,
                              segmentations: Sequence[FrameSegmentation], *, depth: np.ndarray | None = None,
                              camera_index: np.ndarray | None = None) -> CloudLabeling:
        """Per-point instance ids -> 3D cleanup, class labels, scores and 3D objects.

        Shared by camera labeling and LiDAR-only range-image labeling.
        """
        from samfusion.pointcloud.objects3d import compute_objects

        n = xyz.shape[0]
        instance = raw
        if self.config.cleanup and np.any(raw):
            from samfusion.pointcloud.cleanup import CleanupConfig, clean_instances

            cleanup = CleanupConfig(eps_m=self.config.cleanup_eps_m,
                                    min_points=self.config.cleanup_min_points)
            instance = clean_instances(xyz, raw, depth, cleanup).astype(np.uint32)
        names_by_id: dict[int, str] = {}
        scores_by_id: dict[int, float] = {}
        for seg in segmentations:
            for inst in seg.instances:
                if inst.score >= scores_by_id.get(inst.instance_id, -1.0):
                    names_by_id[inst.instance_id] = inst.label
                    scores_by_id[inst.instance_id] = float(inst.score)
        lut_ids = np.array(sorted(names_by_id), dtype=np.int64)
        label = np.zeros(n, np.uint16)
        score = np.zeros(n, np.float32)
        if lut_ids.size:
            pos = np.searchsorted(lut_ids, instance)
            pos = np.clip(pos, 0, lut_ids.size - 1)
            hit = (lut_ids[pos] == instance) & (instance > 0)
            label_lut = np.array([self.labels.id_for(names_by_id[i]) for i in lut_ids], np.uint16)
            score_lut = np.array([scores_by_id[i] for i in lut_ids], np.float32)
            label[hit] = label_lut[pos[hit]]
            score[hit] = score_lut[pos[hit]]
            instance = np.where(hit, instance, 0).astype(np.uint32)
        else:
            instance = np.zeros(n, np.uint32)
        objects = compute_objects(xyz, instance, names_by_id, scores_by_id)
        if camera_index is None:
            camera_index = np.where(instance > 0, 0, -1).astype(np.int16)
        return CloudLabeling(instance=instance, label=label, score=score, camera_index=camera_index,
                             cameras=[s.camera for s in segmentations], objects=objects,
                             raw_instance=np.asarray(raw, dtype=np.uint32))


def _clip_to_visible(instances: Sequence[Instance], id_image: np.ndarray) -> None:
    """Where masks overlap the higher score owns the pixel: shrink the others' masks to what they
    own in the id image, so areas, boxes and the id image agree. One bincount finds them."""
    if len(instances) < 2:
        return
    counts = np.bincount(id_image.ravel(), minlength=int(id_image.max()) + 1)
    for inst in instances:
        if inst.instance_id < counts.size and counts[inst.instance_id] != inst.area:
            inst.mask = id_image == inst.instance_id


# Flat keys shared by the node's parameters and the offline YAML / CLI.
_BACKEND_KEYS = ("backend", "checkpoint", "device", "dtype", "score_threshold", "mask_threshold",
                 "max_objects", "compile", "allow_download")
_TRACKER_KEYS = {"score_threshold": "score_threshold", "lost_after": "lost_after",
                 "forget_after": "forget_after", "match_iou": "match_iou",
                 "max_objects": "max_objects"}
_PIPELINE_KEYS = ("min_depth_m", "occlusion_radius_px", "occlusion_depth_tolerance_m", "cleanup",
                  "cleanup_eps_m", "cleanup_min_points", "class_names", "labeling_backend")


def perception_config_from_flat(values: Mapping[str, object]) -> PerceptionConfig:
    """Build a validated PerceptionConfig from flat keys (node parameters or a YAML mapping).

    Unknown keys are ignored here (nodes have topic parameters too); missing keys keep defaults.
    """
    backend = BackendConfig(**{k: values[k] for k in _BACKEND_KEYS if k in values})  # type: ignore[arg-type]
    tracker = TrackerConfig(**{dst: values[src] for src, dst in _TRACKER_KEYS.items() if src in values})  # type: ignore[arg-type]
    rest = {k: values[k] for k in _PIPELINE_KEYS if k in values}
    if "class_names" in rest:
        rest["class_names"] = tuple(rest["class_names"])  # type: ignore[arg-type]
    return PerceptionConfig(backend=backend, tracker=tracker, **rest).validate()  # type: ignore[arg-type]
