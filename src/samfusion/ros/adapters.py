"""Our interfaces <-> core types. Thin: field copying and validation only."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sam_fusion.msg import Box2D, ObjectInstance, SegmentationResult
from samfusion.convert.image import numpy_to_image
from samfusion.errors import PromptError
from samfusion.pipeline.perception import FrameSegmentation
from samfusion.pointcloud.markers import MarkerKind, MarkerSpec
from samfusion.pointcloud.objects3d import Object3D
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction, PromptUpdate

__all__ = ["prompt_from_msg", "points_3d_from_msg", "segmentation_to_msg", "markers_to_msg",
           "stamp_to_seconds"]


def stamp_to_seconds(stamp: Time) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def prompt_from_msg(msg: object) -> PromptUpdate:
    """A Prompt message as a core PromptUpdate (3D points are handled by the caller)."""
    action = int(msg.action)  # type: ignore[attr-defined]
    if action not in {a.value for a in PromptAction}:
        raise PromptError(f"prompt action {action} is unknown (0 add, 1 refine, 2 remove, 3 clear, 4 segment all)")
    points = tuple(PointPrompt(float(p.x), float(p.y), bool(p.positive)) for p in msg.points)  # type: ignore[attr-defined]
    boxes = tuple(BoxPrompt(float(b.x_min), float(b.y_min), float(b.x_max), float(b.y_max), bool(b.positive))
                  for b in msg.boxes)  # type: ignore[attr-defined]
    if len(boxes) > 1 and not msg.text_concepts:  # type: ignore[attr-defined]
        raise PromptError(f"an object prompt takes one box, got {len(boxes)} (several boxes are exemplars "
                          "of a text concept)")
    if len(msg.points_3d) != len(msg.points_3d_positive):  # type: ignore[attr-defined]
        raise PromptError(f"points_3d has {len(msg.points_3d)} entries but points_3d_positive has "  # type: ignore[attr-defined]
                          f"{len(msg.points_3d_positive)}")  # type: ignore[attr-defined]
    return PromptUpdate(action=PromptAction(action), object_id=int(msg.object_id),  # type: ignore[attr-defined]
                        label=str(msg.label), points=points, boxes=boxes,  # type: ignore[attr-defined]
                        concepts=tuple(str(c) for c in msg.text_concepts),  # type: ignore[attr-defined]
                        target=str(msg.target))  # type: ignore[attr-defined]


def points_3d_from_msg(msg: object) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 points and (N,) bool positives of a Prompt's 3D clicks."""
    pts = np.array([[p.x, p.y, p.z] for p in msg.points_3d], dtype=np.float64).reshape(-1, 3)  # type: ignore[attr-defined]
    return pts, np.array(list(msg.points_3d_positive), dtype=bool)  # type: ignore[attr-defined]


def segmentation_to_msg(seg: FrameSegmentation, header: Header, backend: str,
                        objects3d: Sequence[Object3D] = (), cloud_header: Header | None = None) -> SegmentationResult:
    """A SegmentationResult with the mono16 id image and one ObjectInstance per instance."""
    by_id = {o.instance_id: o for o in objects3d}
    out = SegmentationResult()
    out.header = header
    out.source = seg.camera
    out.backend = backend
    out.inference_ms = float(seg.inference_ms)
    out.instance_ids = numpy_to_image(seg.id_image, "mono16", Image, header)
    if cloud_header is not None:
        out.cloud_header = cloud_header
    for inst in seg.instances:
        obj = ObjectInstance()
        obj.id = int(inst.instance_id)
        obj.label = inst.label
        obj.score = float(inst.score)
        x0, y0, x1, y1 = inst.box
        obj.box = Box2D(x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1), positive=False)
        obj.pixel_area = int(inst.area)
        obj.frames_lost = int(seg.frames_lost.get(inst.instance_id, 0))
        o3 = by_id.get(inst.instance_id)
        if o3 is not None:
            fill_object_3d(obj, o3)
        out.objects.append(obj)
    return out


def fill_object_3d(obj: ObjectInstance, o3: Object3D) -> None:
    obj.point_count = int(o3.point_count)
    obj.centroid = Point(x=float(o3.centroid[0]), y=float(o3.centroid[1]), z=float(o3.centroid[2]))
    half = 0.5 * float(o3.yaw)
    obj.box_center = Pose(position=Point(x=float(o3.center[0]), y=float(o3.center[1]), z=float(o3.center[2])),
                          orientation=Quaternion(x=0.0, y=0.0, z=float(np.sin(half)), w=float(np.cos(half))))
    obj.box_size = Vector3(x=float(o3.size[0]), y=float(o3.size[1]), z=float(o3.size[2]))


_MARKER_TYPES = {MarkerKind.BOX: Marker.CUBE, MarkerKind.SPHERE: Marker.SPHERE,
                 MarkerKind.TEXT: Marker.TEXT_VIEW_FACING}


def markers_to_msg(specs: Sequence[MarkerSpec], header: Header, lifetime_s: float = 0.0) -> MarkerArray:
    """rviz markers; a DELETEALL first so objects that vanished disappear."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for spec in specs:
        m = Marker()
        m.header = header
        m.ns = spec.namespace
        m.id = int(spec.id)
        m.type = _MARKER_TYPES[MarkerKind(spec.kind)]
        m.action = Marker.ADD
        px, py, pz = spec.position
        qx, qy, qz, qw = spec.orientation
        m.pose = Pose(position=Point(x=float(px), y=float(py), z=float(pz)),
                      orientation=Quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw)))
        sx, sy, sz = spec.scale
        m.scale = Vector3(x=float(sx), y=float(sy), z=float(sz))
        r, g, b, a = spec.color
        m.color = ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))
        m.text = spec.text
        m.lifetime.sec = int(lifetime_s)
        m.lifetime.nanosec = int((lifetime_s - int(lifetime_s)) * 1e9)
        out.markers.append(m)
    return out
