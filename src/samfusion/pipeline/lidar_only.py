"""LiDAR-only segmentation: render the cloud as a range image, segment it, map masks back.

A robot without cameras uses the same backends, prompts and trackers as a camera: the stream's
"image" is the range image (:func:`samfusion.pointcloud.range_image.to_rgb`), prompt pixel
coordinates are range-image cells (column = azimuth bin, row = beam), and 3D click prompts are
projected into it with :func:`project_to_range_image`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samfusion.errors import PromptError
from samfusion.pipeline.perception import CloudLabeling, FrameSegmentation, PerceptionPipeline
from samfusion.pointcloud.range_image import (
    RangeImage,
    RangeImageConfig,
    masks_to_points,
    project_to_range_image,
    render_range_image,
    to_rgb,
)
from samfusion.segmentation.prompts import PointPrompt

__all__ = ["RangeSegmentation", "segment_cloud_lidar_only", "points_3d_to_range_prompts"]


@dataclass
class RangeSegmentation:
    range_image: RangeImage
    rgb: np.ndarray  # the picture the backend saw (H x W x 3 uint8)
    segmentation: FrameSegmentation
    labels: CloudLabeling


def segment_cloud_lidar_only(pipeline: PerceptionPipeline, stream: str, xyz: np.ndarray,
                             config: RangeImageConfig, intensity: np.ndarray | None = None,
                             ring: np.ndarray | None = None, stamp: float = 0.0) -> RangeSegmentation:
    """Segment ``xyz`` (N, 3, sensor frame, z up) through its range image with the prompts of
    ``stream``; per-point instances are then cleaned and boxed like camera labels."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    image = render_range_image(xyz, intensity, ring, config)
    rgb = to_rgb(image)
    seg = pipeline.segment(stream, rgb, stamp)
    instance = masks_to_points(image, seg.id_image)
    labels = pipeline.labels_from_instances(xyz, instance, [seg], depth=image.point_range)
    return RangeSegmentation(range_image=image, rgb=rgb, segmentation=seg, labels=labels)


def points_3d_to_range_prompts(points: np.ndarray, positive: np.ndarray,
                               config: RangeImageConfig) -> tuple[PointPrompt, ...]:
    """3D clicks (sensor frame) as pixel prompts on the range image (x = column, y = row)."""
    row, col = project_to_range_image(np.asarray(points, dtype=np.float64).reshape(-1, 3), config)
    if np.any(row < 0):
        bad = np.asarray(points).reshape(-1, 3)[row < 0][0].tolist()
        raise PromptError(f"3D point {bad} does not fall into the range image")
    return tuple(PointPrompt(float(c) + 0.5, float(r) + 0.5, bool(p)) for r, c, p in zip(row, col, positive))
