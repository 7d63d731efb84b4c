"""Label LiDAR points with the instance masks of one or several cameras.

Each camera contributes an id image (H x W integer, 0 = background, one id per instance, as
made by ``samfusion.segmentation.base.instances_to_id_image``) and optional per-id scores.
A point takes the id under its pixel if it is *visible* there: projected in front of the
camera, inside the image, and the nearest surface in its pixel neighbourhood
(:class:`~samfusion.geometry.projection.OcclusionConfig`), so points behind a foreground
object are not painted with its mask.

Several cameras (:func:`label_points_multi`): a point seen by more than one camera keeps the
view with the **highest score**, then the **smallest depth**, then the lower camera index.
Visible background counts as score 0, so any labeled view (score > 0) beats it. Instance ids
are per camera on input; :class:`CameraView` maps them to output ids with ``id_offset``
(``out = id + offset`` for id != 0) or an explicit ``id_map`` (ids missing from the map become
0), so callers can keep ids of different cameras apart or merge ids they know to be one object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from samfusion.errors import ConfigError, ConversionError
from samfusion.geometry.calibration import CameraRig
from samfusion.geometry.camera_model import CameraModel
from samfusion.geometry.projection import OcclusionConfig, project_to_cameras, visible_from_pixels
from samfusion.geometry.transform import RigidTransform

__all__ = ["PointLabels", "CameraView", "OcclusionConfig", "label_points", "label_points_multi"]

_MAX_ID = 0xFFFF


@dataclass(frozen=True, eq=False)
class PointLabels:
    """Per-point labels of an N-point cloud.

    ``instance`` uint32 (0 = none), ``score`` float32 (0 where unlabeled), ``visible`` bool
    (projected, in an image and nearest surface in some camera), ``depth`` float32 (z in the
    chosen camera, NaN where not visible), ``camera_index`` int16 (-1 = no camera),
    ``in_view`` bool (inside some image, occluded or not).
    """

    instance: NDArray[np.uint32]
    score: NDArray[np.float32]
    visible: NDArray[np.bool_]
    depth: NDArray[np.float32]
    camera_index: NDArray[np.int16]
    in_view: NDArray[np.bool_]

    @property
    def labeled(self) -> NDArray[np.bool_]:
        return self.instance != 0


@dataclass(frozen=True, eq=False)
class CameraView:
    """One camera's contribution to :func:`label_points_multi`.

    ``motion`` optionally compensates ego motion between the cloud and this camera's
    exposure: it maps cloud coordinates (LiDAR frame at the cloud stamp) into the LiDAR frame
    at the camera stamp (the caller computes it from odometry and ``rig.time_offset_s``); the
    projection then uses ``rig.T_cam_from_lidar @ motion``.
    """

    rig: CameraRig
    id_image: NDArray[np.integer]
    scores: Mapping[int, float] | None = None
    id_offset: int = 0
    id_map: Mapping[int, int] | None = None
    motion: RigidTransform | None = None

    @property
    def transform(self) -> RigidTransform:
        t = self.rig.T_cam_from_lidar
        return t if self.motion is None else t @ self.motion


ViewLike = Union[CameraView, tuple]
_default_occlusion = OcclusionConfig()


def _as_view(item: ViewLike, index: int) -> CameraView:
    if isinstance(item, CameraView):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3):
        return CameraView(*item)
    raise ConfigError(f"camera {index}: expected a CameraView or (CameraRig, id_image, scores), got {type(item).__name__}")


def _id_pixels(view: CameraView, camera: CameraModel, index: int) -> NDArray[np.integer]:
    img = np.asarray(view.id_image)
    w, h = camera.image_size
    if img.ndim != 2 or not np.issubdtype(img.dtype, np.integer):
        raise ConversionError(f"camera {index} ('{view.rig.name}'): id image must be 2-D integer, got {img.dtype} {img.shape}")
    if img.shape != (h, w):
        raise ConversionError(
            f"camera {index} ('{view.rig.name}'): id image is {img.shape[1]}x{img.shape[0]} but the camera "
            f"model publishes {w}x{h}; resize the model with CameraModel.resized_to()"
        )
    if img.dtype not in (np.uint8, np.uint16) and img.size and (img.min() < 0 or img.max() > _MAX_ID):
        raise ConversionError(f"camera {index} ('{view.rig.name}'): instance ids must be in 0..{_MAX_ID}")
    return img.reshape(-1)


def _lut(mapping: Mapping[int, float | int], dtype: type, what: str) -> NDArray:
    lut = np.zeros(_MAX_ID + 1, dtype=dtype)
    if mapping:
        keys = np.fromiter((int(k) for k in mapping.keys()), dtype=np.int64, count=len(mapping))
        if keys.min() < 0 or keys.max() > _MAX_ID:
            raise ConfigError(f"{what} keys must be instance ids in 0..{_MAX_ID}, got {keys.min()}..{keys.max()}")
        lut[keys] = np.fromiter((v for v in mapping.values()), dtype=np.float64, count=len(mapping))
    lut[0] = 0
    return lut


def label_points_multi(
    xyz: ArrayLike,
    cameras: Sequence[ViewLike],
    *,
    occlusion: OcclusionConfig = _default_occlusion,
    min_depth: float = 0.1,
) -> PointLabels:
    """Label a cloud from several cameras; see the module docstring for the overlap rule.

    ``cameras`` holds :class:`CameraView` objects or ``(CameraRig, id_image, scores)`` tuples.
    Scores default to 1.0 for every labeled pixel when a view has none; ids absent from a
    given scores mapping score 0.
    """
    views = [_as_view(item, i) for i, item in enumerate(cameras)]
    pts = np.asarray(xyz)
    n = len(pts)
    hits = project_to_cameras(pts, [v.transform for v in views], [v.rig.camera_model for v in views], min_depth)
    best_score = np.full(n, -np.inf, dtype=np.float32)
    best_depth = np.full(n, np.inf, dtype=np.float32)
    instance = np.zeros(n, dtype=np.uint32)
    camera_index = np.full(n, -1, dtype=np.int16)
    in_view = np.zeros(n, dtype=bool)
    for c, (view, hit) in enumerate(zip(views, hits)):
        ids_flat = _id_pixels(view, view.rig.camera_model, c)
        in_view[hit.index] = True
        pixel = hit.pixel
        sel, d = hit.index, hit.depth
        if occlusion.enabled:
            vis = visible_from_pixels(
                pixel, d, hit.width, radius_px=occlusion.radius_px,
                depth_tolerance=occlusion.depth_tolerance, relative_tolerance=occlusion.relative_tolerance,
            )
            sel, pixel, d = sel[vis], pixel[vis], d[vis]
        ids = ids_flat[pixel]
        if view.scores is None:
            s = (ids != 0).astype(np.float32)
        else:
            s = _lut(view.scores, np.float32, "scores")[ids]
        if view.id_map is not None:
            out_ids = _lut(view.id_map, np.uint32, "id_map")[ids]
        else:
            if view.id_offset < 0:
                raise ConfigError(f"camera {c}: id_offset must be >= 0, got {view.id_offset}")
            out_ids = ids.astype(np.uint32)
            if view.id_offset:
                out_ids[ids != 0] += np.uint32(view.id_offset)
        cur_s, cur_d = best_score[sel], best_depth[sel]
        better = (s > cur_s) | ((s == cur_s) & (d < cur_d))
        win = sel[better]
        best_score[win] = s[better]
        best_depth[win] = d[better]
        instance[win] = out_ids[better]
        camera_index[win] = c
    visible = camera_index >= 0
    score = np.where(visible, best_score, np.float32(0)).astype(np.float32)
    depth = np.where(visible, best_depth, np.float32(np.nan)).astype(np.float32)
    return PointLabels(instance, score, visible, depth, camera_index, in_view)


def label_points(
    xyz: ArrayLike,
    T_cam_from_lidar: RigidTransform,
    camera: CameraModel,
    id_image: NDArray[np.integer],
    scores: Mapping[int, float] | None = None,
    occlusion: OcclusionConfig = _default_occlusion,
    *,
    min_depth: float = 0.1,
) -> PointLabels:
    """Label a cloud from one camera (``camera_index`` is 0 where visible, else -1)."""
    rig = CameraRig(camera.frame_id, camera, T_cam_from_lidar)
    return label_points_multi(xyz, [CameraView(rig, id_image, scores)], occlusion=occlusion, min_depth=min_depth)
