"""Plain-data marker descriptions for 3D objects, and the instance colour palette.

:class:`MarkerSpec` mirrors the fields of a ``visualization_msgs/Marker`` that we use (no ROS
types here); ``samfusion.ros`` and the bag writer turn them into messages. Each object yields a
box, a centroid sphere and a text label in three namespaces, all with ``id = instance_id``, so
a tracked object keeps its markers (and colour) across frames.

:func:`instance_color` is the one palette of the project: overlays, labelled clouds and markers
all colour an instance the same way. Hues step by the golden angle, so consecutive ids are far
apart on the colour wheel, and value / saturation cycle through three levels so ids that land
on similar hues still differ in brightness. Id 0 (unlabelled) is mid grey.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from enum import Enum
from typing import Iterable

import numpy as np

from samfusion.errors import ConfigError
from samfusion.pointcloud.objects3d import Object3D

__all__ = [
    "MarkerKind",
    "MarkerSpec",
    "instance_color",
    "instance_colors",
    "yaw_to_quaternion",
    "markers_from_objects",
    "BACKGROUND_COLOR",
]

BACKGROUND_COLOR = (128, 128, 128)
_GOLDEN = 0.6180339887498949
_SATURATION = np.array([0.85, 0.65, 1.0])
_VALUE = np.array([1.0, 0.8, 0.62])


def instance_colors(instance_ids: np.ndarray) -> np.ndarray:
    """Colours (N, 3) uint8 RGB for an array of instance ids (vectorised :func:`instance_color`)."""
    ids = np.asarray(instance_ids)
    if ids.size and np.any(ids < 0):
        raise ConfigError("instance ids must be non-negative")
    ids = ids.astype(np.int64).reshape(-1)
    hue = (ids * _GOLDEN) % 1.0
    level = ids % 3
    sat, val = _SATURATION[level], _VALUE[level]
    # HSV -> RGB, vectorised (same formula as colorsys.hsv_to_rgb).
    h6 = hue * 6.0
    sector = np.floor(h6).astype(np.int64) % 6
    frac = h6 - np.floor(h6)
    p = val * (1.0 - sat)
    q = val * (1.0 - sat * frac)
    t = val * (1.0 - sat * (1.0 - frac))
    choices = np.stack(
        [
            np.stack([val, t, p], axis=-1),
            np.stack([q, val, p], axis=-1),
            np.stack([p, val, t], axis=-1),
            np.stack([p, q, val], axis=-1),
            np.stack([t, p, val], axis=-1),
            np.stack([val, p, q], axis=-1),
        ],
        axis=0,
    )
    rgb = choices[sector, np.arange(len(ids))]
    out = np.round(rgb * 255.0).astype(np.uint8)
    out[ids == 0] = BACKGROUND_COLOR
    return out


@lru_cache(maxsize=4096)
def instance_color(instance_id: int) -> tuple[int, int, int]:
    """Deterministic, well separated RGB colour of an instance id (0 = unlabelled, grey)."""
    r, g, b = instance_colors(np.array([int(instance_id)]))[0]
    return int(r), int(g), int(b)


class MarkerKind(str, Enum):
    BOX = "box"  # visualization_msgs/Marker CUBE
    SPHERE = "sphere"  # SPHERE
    TEXT = "text"  # TEXT_VIEW_FACING


@dataclass(frozen=True)
class MarkerSpec:
    """One marker: pose in the cloud's frame, ``scale`` in metres, ``color`` RGBA in 0..1.

    For text, ``scale[2]`` is the letter height (rviz ignores x and y).
    """

    kind: MarkerKind
    id: int
    namespace: str
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]  # quaternion x, y, z, w
    scale: tuple[float, float, float]
    color: tuple[float, float, float, float]
    text: str = ""


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) of a rotation by ``yaw`` about +z."""
    return (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))


def _vec3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def markers_from_objects(
    objects: Iterable[Object3D],
    *,
    namespace: str = "samfusion",
    box_alpha: float = 0.4,
    min_box_size_m: float = 0.05,
    sphere_diameter_m: float = 0.3,
    text_height_m: float = 0.6,
    text_gap_m: float = 0.3,
) -> list[MarkerSpec]:
    """Box, centroid sphere and text markers for each object (namespaces ``<ns>/box`` etc.).

    Box scales are at least ``min_box_size_m`` so that flat or single-point objects stay
    visible; the text floats ``text_gap_m`` above the box and reads ``label #id score``.
    """
    if not 0.0 <= box_alpha <= 1.0:
        raise ConfigError(f"box_alpha must be in [0, 1], got {box_alpha}")
    if min(min_box_size_m, sphere_diameter_m, text_height_m) <= 0.0:
        raise ConfigError("marker sizes must be positive")
    specs: list[MarkerSpec] = []
    identity = (0.0, 0.0, 0.0, 1.0)
    for obj in objects:
        r, g, b = (c / 255.0 for c in instance_color(obj.instance_id))
        box_scale = np.maximum(obj.size, min_box_size_m)
        specs.append(
            MarkerSpec(
                kind=MarkerKind.BOX,
                id=obj.instance_id,
                namespace=f"{namespace}/box",
                position=_vec3(obj.center),
                orientation=yaw_to_quaternion(obj.yaw),
                scale=_vec3(box_scale),
                color=(r, g, b, box_alpha),
            )
        )
        specs.append(
            MarkerSpec(
                kind=MarkerKind.SPHERE,
                id=obj.instance_id,
                namespace=f"{namespace}/centroid",
                position=_vec3(obj.centroid),
                orientation=identity,
                scale=(sphere_diameter_m,) * 3,
                color=(r, g, b, 1.0),
            )
        )
        top = obj.center[2] + 0.5 * box_scale[2] + text_gap_m + 0.5 * text_height_m
        specs.append(
            MarkerSpec(
                kind=MarkerKind.TEXT,
                id=obj.instance_id,
                namespace=f"{namespace}/label",
                position=(float(obj.center[0]), float(obj.center[1]), float(top)),
                orientation=identity,
                scale=(text_height_m,) * 3,
                color=(1.0, 1.0, 1.0, 1.0),
                text=f"{obj.label} #{obj.instance_id} {obj.score:.2f}",
            )
        )
    return specs
