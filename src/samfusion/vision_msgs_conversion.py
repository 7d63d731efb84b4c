"""Our results as vision_msgs-shaped detections (plain dicts), for standard perception stacks.

Pure: no ROS import. The dicts mirror the fields of ``vision_msgs/Detection2DArray`` and
``vision_msgs/Detection3DArray`` (vision_msgs 4.x, Humble and later) so that a thin filler
(:func:`samfusion.ros.vision_detections.fill_message`) copies them into real messages:

* ``id``: the instance id as a string (stable while the object is tracked: a tracking id);
* ``results[0].hypothesis.class_id``: the label (prompt label or text concept, may be empty);
  ``results[0].hypothesis.score``: the instance score;
* 2D: ``bbox.center.position`` / ``bbox.size_x`` / ``bbox.size_y`` in continuous pixel
  coordinates (pixel i spans [i, i + 1), so a mask box [x_min, x_max) has its centre at
  (x_min + x_max) / 2); ``bbox.center.theta`` is 0 (axis-aligned);
* 3D: ``bbox.center`` is the box centre and its yaw about +z, ``bbox.size`` the (length, width,
  height) extents, in the frame of the cloud the objects were computed from; the hypothesis pose
  is the same centre pose.

Objects that are lost (``frames_lost > 0``) or have an empty mask are left out of the 2D array;
objects without LiDAR points are left out of the 3D array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from samfusion.errors import ConversionError

__all__ = [
    "DetectedObject",
    "header_dict",
    "objects_from_result",
    "objects_from_frame",
    "detection_2d",
    "detection_3d",
    "detection_2d_array",
    "detection_3d_array",
]


@dataclass(frozen=True)
class DetectedObject:
    """One object of a result. ``box_2d`` is (x_min, y_min, x_max, y_max) in pixels, max
    exclusive; the 3D part (``center_3d``, ``size_3d``, ``yaw``) is None without LiDAR points."""

    instance_id: int
    label: str
    score: float
    box_2d: tuple[float, float, float, float] | None = None
    frames_lost: int = 0
    center_3d: tuple[float, float, float] | None = None
    size_3d: tuple[float, float, float] | None = None
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if self.instance_id < 0:
            raise ConversionError(f"instance id {self.instance_id} is negative")
        if not math.isfinite(self.score):
            raise ConversionError(f"object {self.instance_id}: score {self.score} is not finite")
        if self.box_2d is not None:
            x0, y0, x1, y1 = self.box_2d
            if not all(math.isfinite(v) for v in self.box_2d) or x1 < x0 or y1 < y0:
                raise ConversionError(f"object {self.instance_id}: bad 2D box {self.box_2d}")
        if (self.center_3d is None) != (self.size_3d is None):
            raise ConversionError(f"object {self.instance_id}: 3D centre and size go together")
        if self.size_3d is not None and min(self.size_3d) < 0:
            raise ConversionError(f"object {self.instance_id}: negative 3D size {self.size_3d}")

    @property
    def visible(self) -> bool:
        """Tracked in this frame with a non-empty mask box."""
        if self.frames_lost > 0 or self.box_2d is None:
            return False
        x0, y0, x1, y1 = self.box_2d
        return x1 > x0 and y1 > y0


def header_dict(stamp: Any = None, frame_id: str = "", *, sec: int | None = None,
                nanosec: int = 0) -> dict[str, Any]:
    """A std_msgs/Header-shaped dict: from a message header-like ``stamp`` (``.sec``,
    ``.nanosec``), float seconds, or ``sec``/``nanosec``."""
    if stamp is not None and hasattr(stamp, "stamp"):  # a Header
        frame_id = frame_id or str(stamp.frame_id)
        stamp = stamp.stamp
    if stamp is not None and hasattr(stamp, "sec"):
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    elif stamp is not None:
        seconds = float(stamp)
        if not math.isfinite(seconds) or seconds < 0:
            raise ConversionError(f"stamp {stamp} is not a finite, non-negative time")
        sec = int(math.floor(seconds))
        nanosec = min(int(round((seconds - sec) * 1e9)), 999_999_999)
    return {"stamp": {"sec": int(sec or 0), "nanosec": int(nanosec)}, "frame_id": str(frame_id)}


# ---- from our results -------------------------------------------------------------------------
def objects_from_result(result: Any) -> list[DetectedObject]:
    """Objects of a sam_fusion/SegmentationResult (or anything with its field names)."""
    out = []
    for obj in result.objects:
        box = obj.box
        has_3d = int(getattr(obj, "point_count", 0)) > 0
        center = size = None
        yaw = 0.0
        if has_3d:
            p, q = obj.box_center.position, obj.box_center.orientation
            center = (float(p.x), float(p.y), float(p.z))
            size = (float(obj.box_size.x), float(obj.box_size.y), float(obj.box_size.z))
            yaw = math.atan2(2.0 * (float(q.w) * float(q.z) + float(q.x) * float(q.y)),
                             1.0 - 2.0 * (float(q.y) ** 2 + float(q.z) ** 2))
        out.append(DetectedObject(
            instance_id=int(obj.id), label=str(obj.label), score=float(obj.score),
            box_2d=(float(box.x_min), float(box.y_min), float(box.x_max), float(box.y_max)),
            frames_lost=int(getattr(obj, "frames_lost", 0)), center_3d=center, size_3d=size, yaw=yaw))
    return out


def objects_from_frame(instances: Iterable[Any], objects_3d: Iterable[Any] = (),
                       frames_lost: dict[int, int] | None = None) -> list[DetectedObject]:
    """Objects of core results: segmentation instances (``instance_id``, ``label``, ``score``,
    ``box``) joined by id with 3D objects (``instance_id``, ``point_count``, ``center``,
    ``size``, ``yaw``)."""
    by_id = {int(o.instance_id): o for o in objects_3d if int(o.point_count) > 0}
    lost = frames_lost or {}
    out = []
    for inst in instances:
        iid = int(inst.instance_id)
        o3 = by_id.get(iid)
        out.append(DetectedObject(
            instance_id=iid, label=str(inst.label), score=float(inst.score),
            box_2d=tuple(float(v) for v in inst.box),  # type: ignore[arg-type]
            frames_lost=int(lost.get(iid, 0)),
            center_3d=None if o3 is None else tuple(float(v) for v in o3.center),  # type: ignore[arg-type]
            size_3d=None if o3 is None else tuple(float(v) for v in o3.size),  # type: ignore[arg-type]
            yaw=0.0 if o3 is None else float(o3.yaw)))
    return out


# ---- to vision_msgs-shaped dicts --------------------------------------------------------------
def _hypothesis(obj: DetectedObject, pose: dict[str, Any]) -> dict[str, Any]:
    return {"hypothesis": {"class_id": obj.label, "score": float(obj.score)}, "pose": {"pose": pose}}


def _pose(center: Sequence[float] = (0.0, 0.0, 0.0), yaw: float = 0.0) -> dict[str, Any]:
    half = 0.5 * float(yaw)
    return {"position": {"x": float(center[0]), "y": float(center[1]), "z": float(center[2])},
            "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(half), "w": math.cos(half)}}


def detection_2d(obj: DetectedObject, header: dict[str, Any]) -> dict[str, Any]:
    """A vision_msgs/Detection2D-shaped dict (needs ``box_2d``)."""
    if obj.box_2d is None:
        raise ConversionError(f"object {obj.instance_id} has no 2D box")
    x0, y0, x1, y1 = obj.box_2d
    return {
        "header": header,
        "id": str(obj.instance_id),
        "results": [_hypothesis(obj, _pose())],
        "bbox": {"center": {"position": {"x": 0.5 * (x0 + x1), "y": 0.5 * (y0 + y1)}, "theta": 0.0},
                 "size_x": float(x1 - x0), "size_y": float(y1 - y0)},
    }


def detection_3d(obj: DetectedObject, header: dict[str, Any]) -> dict[str, Any]:
    """A vision_msgs/Detection3D-shaped dict (needs the 3D part)."""
    if obj.center_3d is None or obj.size_3d is None:
        raise ConversionError(f"object {obj.instance_id} has no 3D box")
    pose = _pose(obj.center_3d, obj.yaw)
    sx, sy, sz = obj.size_3d
    return {
        "header": header,
        "id": str(obj.instance_id),
        "results": [_hypothesis(obj, pose)],
        "bbox": {"center": pose, "size": {"x": float(sx), "y": float(sy), "z": float(sz)}},
    }


def detection_2d_array(objects: Iterable[DetectedObject], header: dict[str, Any]) -> dict[str, Any]:
    """Detection2DArray-shaped dict of the visible objects, in instance id order."""
    visible = sorted((o for o in objects if o.visible), key=lambda o: o.instance_id)
    return {"header": header, "detections": [detection_2d(o, header) for o in visible]}


def detection_3d_array(objects: Iterable[DetectedObject], header: dict[str, Any]) -> dict[str, Any]:
    """Detection3DArray-shaped dict of the objects with LiDAR points, in instance id order.

    ``header`` must name the frame the 3D boxes are in (the cloud's frame).
    """
    with_3d = sorted((o for o in objects if o.center_3d is not None), key=lambda o: o.instance_id)
    return {"header": header, "detections": [detection_3d(o, header) for o in with_3d]}
