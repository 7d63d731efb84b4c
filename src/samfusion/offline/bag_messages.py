"""Core results <-> rosbags messages (our SegmentationResult, Image, PointCloud2, MarkerArray, Prompt, TF).

The rosbags counterpart of ``samfusion.ros.adapters`` (which needs rclpy): same field mapping,
built with :func:`samfusion.offline.bags.new_message` so every field is set. Byte payloads
become uint8 numpy arrays, the form rosbags serializes.
"""

from __future__ import annotations

import array as _array
import math
from collections import deque
from typing import Any, Sequence

import numpy as np

from samfusion.convert.compressed import numpy_to_compressed
from samfusion.convert.image import numpy_to_image
from samfusion.convert.pointcloud2 import labeled_cloud, structured_to_cloud
from samfusion.errors import PromptError
from samfusion.geometry.camera_info import camera_model_to_camera_info
from samfusion.geometry.camera_model import CameraModel
from samfusion.geometry.transform import RigidTransform
from samfusion.offline.bags import (CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD, PROMPT, TF_MESSAGE,
                                    new_message)
from samfusion.pipeline.perception import FrameSegmentation
from samfusion.pointcloud.markers import MarkerKind, MarkerSpec
from samfusion.pointcloud.objects3d import Object3D
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction, PromptUpdate

__all__ = [
    "SEGMENTATION_RESULT", "MARKER_ARRAY",
    "header", "image_message", "compressed_message", "camera_info_message", "cloud_message",
    "labeled_cloud_message", "segmentation_message", "markers_message", "prompt_message",
    "prompt_from_message", "points_3d_of", "tf_message", "StaticTransforms",
]

SEGMENTATION_RESULT = "sam_fusion/msg/SegmentationResult"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
_MARKER_TYPES = {MarkerKind.BOX: 1, MarkerKind.SPHERE: 2, MarkerKind.TEXT: 9}  # CUBE, SPHERE, TEXT
_DELETEALL = 3


def _bytes_field(msg: Any) -> Any:
    if isinstance(msg.data, (_array.array, bytes, bytearray, memoryview)):
        msg.data = np.frombuffer(msg.data, dtype=np.uint8).copy()
    return msg


def header(store: Any, stamp: float, frame_id: str) -> Any:
    """A std_msgs/Header at ``stamp`` seconds."""
    sec = math.floor(stamp)
    nanosec = min(int(round((stamp - sec) * 1e9)), 999_999_999)
    time = new_message(store, "builtin_interfaces/msg/Time", sec=int(sec), nanosec=nanosec)
    return new_message(store, "std_msgs/msg/Header", stamp=time, frame_id=frame_id)


def image_message(store: Any, array: np.ndarray, encoding: str, hdr: Any) -> Any:
    return _bytes_field(numpy_to_image(array, encoding, lambda: new_message(store, IMAGE), hdr))


def compressed_message(store: Any, array: np.ndarray, fmt: str, hdr: Any) -> Any:
    return _bytes_field(numpy_to_compressed(array, fmt, lambda: new_message(store, COMPRESSED_IMAGE), hdr))


def camera_info_message(store: Any, model: CameraModel, hdr: Any) -> Any:
    return camera_model_to_camera_info(model, store.types[CAMERA_INFO], hdr,
                                       roi_cls=store.types["sensor_msgs/msg/RegionOfInterest"])


def cloud_message(store: Any, structured: np.ndarray, hdr: Any) -> Any:
    msg = structured_to_cloud(structured, lambda: new_message(store, POINT_CLOUD),
                              store.types["sensor_msgs/msg/PointField"], header=hdr)
    return _bytes_field(msg)


def labeled_cloud_message(store: Any, source: Any, label: np.ndarray, instance: np.ndarray,
                          score: np.ndarray) -> Any:
    """The source cloud's points plus label / instance / score (see ``convert.labeled_cloud``)."""
    msg = labeled_cloud(source, label, instance, score, msg_cls=lambda: new_message(store, POINT_CLOUD),
                        field_cls=store.types["sensor_msgs/msg/PointField"], header=source.header)
    return _bytes_field(msg)


def _point(store: Any, xyz: Sequence[float]) -> Any:
    return new_message(store, "geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _pose(store: Any, xyz: Sequence[float], quat: Sequence[float]) -> Any:
    q = new_message(store, "geometry_msgs/msg/Quaternion", x=float(quat[0]), y=float(quat[1]),
                    z=float(quat[2]), w=float(quat[3]))
    return new_message(store, "geometry_msgs/msg/Pose", position=_point(store, xyz), orientation=q)


def _vector(store: Any, xyz: Sequence[float]) -> Any:
    return new_message(store, "geometry_msgs/msg/Vector3", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def segmentation_message(store: Any, seg: FrameSegmentation, hdr: Any, backend: str,
                         objects3d: Sequence[Object3D] = ()) -> Any:
    """SegmentationResult: mono16 id image plus one ObjectInstance per instance (3D part if labeled)."""
    by_id = {o.instance_id: o for o in objects3d}
    objects = []
    for inst in sorted(seg.instances, key=lambda i: i.instance_id):
        x0, y0, x1, y1 = inst.box
        box = new_message(store, "sam_fusion/msg/Box2D", x_min=float(x0), y_min=float(y0),
                          x_max=float(x1), y_max=float(y1), positive=False)
        fields: dict[str, Any] = dict(id=int(inst.instance_id), label=inst.label, score=float(inst.score),
                                      box=box, pixel_area=int(inst.area),
                                      frames_lost=int(seg.frames_lost.get(inst.instance_id, 0)))
        o3 = by_id.get(inst.instance_id)
        if o3 is not None:
            half = 0.5 * float(o3.yaw)
            fields.update(point_count=int(o3.point_count), centroid=_point(store, o3.centroid),
                          box_center=_pose(store, o3.center, (0.0, 0.0, math.sin(half), math.cos(half))),
                          box_size=_vector(store, o3.size))
        objects.append(new_message(store, "sam_fusion/msg/ObjectInstance", **fields))
    ids = image_message(store, seg.id_image.astype(np.uint16), "mono16", hdr)
    return new_message(store, SEGMENTATION_RESULT, header=hdr, source=seg.camera, instance_ids=ids,
                       objects=objects, backend=backend, inference_ms=float(seg.inference_ms))


def markers_message(store: Any, specs: Sequence[MarkerSpec], hdr: Any) -> Any:
    """MarkerArray for rviz / Foxglove: a DELETEALL first so vanished objects disappear."""
    markers = [new_message(store, "visualization_msgs/msg/Marker", header=hdr, action=_DELETEALL)]
    for spec in specs:
        r, g, b, a = spec.color
        markers.append(new_message(
            store, "visualization_msgs/msg/Marker", header=hdr, ns=spec.namespace, id=int(spec.id),
            type=_MARKER_TYPES[MarkerKind(spec.kind)], action=0,
            pose=_pose(store, spec.position, spec.orientation), scale=_vector(store, spec.scale),
            color=new_message(store, "std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(a)),
            text=spec.text))
    return new_message(store, MARKER_ARRAY, markers=markers)


# ---------------------------------------------------------------------------------- prompts
def prompt_message(store: Any, update: PromptUpdate, hdr: Any, points_3d: np.ndarray | None = None,
                   points_3d_positive: Sequence[bool] = ()) -> Any:
    """A sam_fusion/Prompt message carrying ``update`` (and optional 3D clicks in hdr.frame_id)."""
    pts = [new_message(store, "sam_fusion/msg/PixelPoint", x=float(p.x), y=float(p.y), positive=bool(p.positive))
           for p in update.points]
    boxes = [new_message(store, "sam_fusion/msg/Box2D", x_min=float(b.x_min), y_min=float(b.y_min),
                         x_max=float(b.x_max), y_max=float(b.y_max), positive=bool(b.positive))
             for b in update.boxes]
    p3 = [] if points_3d is None else [_point(store, p) for p in np.asarray(points_3d, float).reshape(-1, 3)]
    return new_message(store, PROMPT, header=hdr, target=update.target, action=int(update.action),
                       object_id=int(update.object_id), label=update.label,
                       text_concepts=list(update.concepts), points=pts, points_3d=p3,
                       points_3d_positive=np.array(list(points_3d_positive), dtype=bool), boxes=boxes)


def prompt_from_message(msg: Any) -> PromptUpdate:
    """A decoded Prompt message as a PromptUpdate (3D clicks: :func:`points_3d_of`)."""
    action = int(msg.action)
    if action not in {a.value for a in PromptAction}:
        raise PromptError(f"prompt action {action} is unknown (0 add, 1 refine, 2 remove, 3 clear, 4 segment all)")
    points = tuple(PointPrompt(float(p.x), float(p.y), bool(p.positive)) for p in msg.points)
    boxes = tuple(BoxPrompt(float(b.x_min), float(b.y_min), float(b.x_max), float(b.y_max), bool(b.positive))
                  for b in msg.boxes)
    if len(boxes) > 1 and not len(msg.text_concepts):
        raise PromptError(f"an object prompt takes one box, got {len(boxes)} (several boxes are exemplars "
                          "of a text concept)")
    if len(msg.points_3d) != len(msg.points_3d_positive):
        raise PromptError(f"points_3d has {len(msg.points_3d)} entries but points_3d_positive has "
                          f"{len(msg.points_3d_positive)}")
    return PromptUpdate(action=PromptAction(action), object_id=int(msg.object_id), label=str(msg.label),
                        points=points, boxes=boxes, concepts=tuple(str(c) for c in msg.text_concepts),
                        target=str(msg.target))


def points_3d_of(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 3D clicks and (N,) bool positives of a Prompt message."""
    pts = np.array([[p.x, p.y, p.z] for p in msg.points_3d], dtype=np.float64).reshape(-1, 3)
    return pts, np.array(list(msg.points_3d_positive), dtype=bool)


# ---------------------------------------------------------------------------------- TF
def tf_message(store: Any, transforms: Sequence[tuple[str, str, RigidTransform]], stamp: float = 0.0) -> Any:
    """TFMessage of (parent, child, T_parent_from_child) entries."""
    items = []
    for parent, child, transform in transforms:
        xyz, xyzw = transform.to_translation_quaternion()
        tr = new_message(store, "geometry_msgs/msg/Transform", translation=_vector(store, xyz),
                         rotation=new_message(store, "geometry_msgs/msg/Quaternion", x=float(xyzw[0]),
                                              y=float(xyzw[1]), z=float(xyzw[2]), w=float(xyzw[3])))
        items.append(new_message(store, "geometry_msgs/msg/TransformStamped", header=header(store, stamp, parent),
                                 child_frame_id=child, transform=tr))
    return new_message(store, TF_MESSAGE, transforms=items)


class StaticTransforms:
    """A static TF graph from /tf_static messages; looks up chains between any two frames."""

    def __init__(self) -> None:
        self._edges: dict[str, dict[str, RigidTransform]] = {}  # [a][b] = T_b_from_a

    def __len__(self) -> int:
        return sum(len(v) for v in self._edges.values()) // 2

    def add_message(self, msg: Any) -> None:
        for ts in msg.transforms:
            t, q = ts.transform.translation, ts.transform.rotation
            transform = RigidTransform.from_translation_quaternion([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])
            self.add(str(ts.header.frame_id).lstrip("/"), str(ts.child_frame_id).lstrip("/"), transform)

    def add(self, parent: str, child: str, T_parent_from_child: RigidTransform) -> None:
        self._edges.setdefault(child, {})[parent] = T_parent_from_child
        self._edges.setdefault(parent, {})[child] = T_parent_from_child.inverse()

    def lookup(self, target: str, source: str) -> RigidTransform | None:
        """T_target_from_source through the graph (breadth-first), or None without a path."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return RigidTransform.identity()
        seen = {source: RigidTransform.identity()}  # frame -> T_frame_from_source
        queue = deque([source])
        while queue:
            frame = queue.popleft()
            for nxt, T_nxt_from_frame in self._edges.get(frame, {}).items():
                if nxt not in seen:
                    seen[nxt] = T_nxt_from_frame @ seen[frame]
                    if nxt == target:
                        return seen[nxt]
                    queue.append(nxt)
        return None
