"""rosbag2 (.db3 and .mcap) reading and writing with rosbags: no ROS install needed.

* :func:`bag_typestore` is the ROS 2 Jazzy type store plus our ``sam_fusion/msg/*`` types, parsed
  from the package's ``msg/*.msg`` files (the interfaces stay the single source of truth).
* :func:`select_topics` picks the inputs: camera images (``sensor_msgs/Image`` or
  ``CompressedImage``) with their ``CameraInfo``, one LiDAR ``PointCloud2``, ``sam_fusion/Prompt``
  topics and ``/tf_static``. Without explicit choices a camera is named like the perception node's
  stream: the image topic without ``/image_raw`` (or ``/image_rect``, ``/image``, ...) and
  ``/compressed``, so ``/CAM_FRONT/image_raw/compressed`` is camera ``CAM_FRONT`` and its info is
  ``/CAM_FRONT/camera_info``; that name is what recorded Prompt messages target.
* :class:`BagReader` yields raw CDR messages in time order; :class:`BagWriter` copies input
  connections with their recorded definitions and hashes (messages byte for byte) and adds result
  topics defined by the type store, so the output opens in rosbags and in Foxglove.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from samfusion.errors import ConfigError, ConversionError

try:
    from rosbags.interfaces import Nodetype
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
except ImportError as exc:  # pragma: no cover - optional dependency
    raise ImportError("bag support needs rosbags: pip install 'samfusion[bags]'") from exc

__all__ = [
    "IMAGE", "COMPRESSED_IMAGE", "CAMERA_INFO", "POINT_CLOUD", "PROMPT", "TF_MESSAGE",
    "find_msg_dir", "bag_typestore", "new_message", "header_stamp", "storage_of",
    "CameraTopics", "TopicSelection", "camera_name_from_topic", "parse_camera_spec", "select_topics",
    "BagReader", "BagWriter",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD = "sensor_msgs/msg/PointCloud2"
PROMPT = "sam_fusion/msg/Prompt"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
_IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
_TF_TOPICS = ("/tf_static",)

_NUMPY_OF = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
             "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
             "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64}


# ---------------------------------------------------------------------------------- types
def find_msg_dir() -> Path:
    """Directory of our ``.msg`` files: $SAMFUSION_MSG_DIR, the source checkout, or an ament prefix."""
    candidates: list[Path] = []
    if os.environ.get("SAMFUSION_MSG_DIR"):
        candidates.append(Path(os.environ["SAMFUSION_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[3] / "msg")
    candidates.append(Path(sys.prefix) / "share" / "sam_fusion" / "msg")  # pip install (setup.py data_files)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "sam_fusion" / "msg")
    for path in candidates:
        if (path / "SegmentationResult.msg").is_file():
            return path
    raise ConfigError("cannot find the sam_fusion .msg files (looked in "
                      f"{', '.join(str(c) for c in candidates)}); set SAMFUSION_MSG_DIR")


@lru_cache(maxsize=4)
def _typestore(msg_dir: str) -> Any:
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for path in sorted(Path(msg_dir).glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"sam_fusion/msg/{path.stem}"))
    if not types:
        raise ConfigError(f"no .msg files in {msg_dir}")
    store.register(types)
    return store


def bag_typestore(msg_dir: str | Path | None = None) -> Any:
    """ROS 2 Jazzy types plus ``sam_fusion/msg/*`` (cached per directory)."""
    return _typestore(str(Path(msg_dir) if msg_dir else find_msg_dir()))


def _default(store: Any, node: tuple[Any, Any]) -> Any:
    kind, spec = node
    if kind == Nodetype.BASE:
        name = spec[0]
        return "" if name == "string" else (False if name == "bool" else _NUMPY_OF[name](0).item())
    if kind == Nodetype.NAME:
        return new_message(store, spec)
    inner, length = spec
    if inner[0] == Nodetype.BASE and inner[1][0] in _NUMPY_OF:
        return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_NUMPY_OF[inner[1][0]])
    return [_default(store, inner) for _ in range(length)] if kind == Nodetype.ARRAY else []


def new_message(store: Any, msgtype: str, **fields: Any) -> Any:
    """A rosbags message of ``msgtype`` with every field at its default (0, "", empty) or given.

    rosbags message classes need all fields at construction; this makes them usable as the
    ``msg_cls`` factories of :mod:`samfusion.convert`.
    """
    try:
        _, defs = store.fielddefs[msgtype]
    except KeyError:
        raise ConfigError(f"message type {msgtype} is not in the type store") from None
    values = {name: fields.pop(name) if name in fields else _default(store, node) for name, node in defs}
    if fields:
        raise ConfigError(f"{msgtype} has no field(s) {sorted(fields)}")
    return store.types[msgtype](**values)


def header_stamp(raw: bytes | memoryview) -> float:
    """Header stamp (seconds) of a CDR message whose first field is a std_msgs/Header."""
    if len(raw) < 12:
        raise ConversionError(f"CDR message of {len(raw)} bytes has no header")
    order = "<" if raw[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(f"{order}iI", raw, 4)
    return float(sec) + float(nanosec) * 1e-9


def storage_of(path: str | Path) -> StoragePlugin:
    """Storage plugin of a bag (directory or file) from its file suffix."""
    p = Path(path)
    files = [p] if p.is_file() else list(p.glob("*.mcap")) + list(p.glob("*.db3"))
    return StoragePlugin.MCAP if any(f.suffix == ".mcap" for f in files) else StoragePlugin.SQLITE3


# ---------------------------------------------------------------------------------- topics
@dataclass(frozen=True)
class CameraTopics:
    """One camera stream: its name (prompt target), image topic and optional CameraInfo topic."""

    name: str
    image: str
    info: str | None = None


@dataclass(frozen=True)
class TopicSelection:
    cameras: tuple[CameraTopics, ...]
    lidar: str | None
    prompts: tuple[str, ...] = ()
    tf: tuple[str, ...] = ()

    def role(self) -> dict[str, tuple[str, str]]:
        """topic -> (kind, camera name) for every selected topic."""
        roles: dict[str, tuple[str, str]] = {}
        for cam in self.cameras:
            roles[cam.image] = ("image", cam.name)
            if cam.info:
                roles[cam.info] = ("info", cam.name)
        if self.lidar:
            roles[self.lidar] = ("cloud", "")
        roles.update({t: ("prompt", "") for t in self.prompts})
        roles.update({t: ("tf", "") for t in self.tf})
        return roles


_IMAGE_SUFFIX = re.compile(r"/(image_raw|image_rect_color|image_rect|image_color|image_mono|image)$")


def camera_name_from_topic(topic: str) -> str:
    """``/ns/cam/image_raw/compressed`` -> ``ns/cam`` (the perception node's stream name)."""
    base = topic[: -len("/compressed")] if topic.endswith("/compressed") else topic
    base = _IMAGE_SUFFIX.sub("", base)
    return base.strip("/") or topic.strip("/")


def parse_camera_spec(spec: str) -> CameraTopics:
    """``NAME=IMAGE_TOPIC[,INFO_TOPIC]`` as given on the command line."""
    name, sep, topics = spec.partition("=")
    parts = [t.strip() for t in topics.split(",") if t.strip()]
    if not sep or not name.strip() or not 1 <= len(parts) <= 2:
        raise ConfigError(f"camera '{spec}': expected NAME=IMAGE_TOPIC[,CAMERA_INFO_TOPIC]")
    return CameraTopics(name.strip(), parts[0], parts[1] if len(parts) == 2 else None)


def _check_type(topic_types: Mapping[str, str], topic: str, allowed: Sequence[str], what: str) -> None:
    if topic not in topic_types:
        raise ConfigError(f"{what} topic {topic} is not in the bag; topics: {sorted(topic_types)}")
    if topic_types[topic] not in allowed:
        raise ConfigError(f"{what} topic {topic} has type {topic_types[topic]}, expected {' or '.join(allowed)}")


def select_topics(topic_types: Mapping[str, str], *, cameras: Sequence[CameraTopics] = (),
                  lidar: str | None = None, prompts: Sequence[str] | None = None) -> TopicSelection:
    """Validate explicit choices or detect them (see module docstring); raises ConfigError."""
    chosen: list[CameraTopics] = []
    if cameras:
        for cam in cameras:
            _check_type(topic_types, cam.image, _IMAGE_TYPES, f"camera '{cam.name}' image")
            info = cam.info
            if info is None:
                guess = f"/{camera_name_from_topic(cam.image)}/camera_info"
                info = guess if topic_types.get(guess) == CAMERA_INFO else None
            else:
                _check_type(topic_types, info, (CAMERA_INFO,), f"camera '{cam.name}' info")
            chosen.append(CameraTopics(cam.name, cam.image, info))
    else:
        by_name: dict[str, str] = {}
        for topic, msgtype in sorted(topic_types.items()):
            if msgtype in _IMAGE_TYPES:
                name = camera_name_from_topic(topic)
                # raw and compressed of one camera: keep the raw one (lossless)
                if name not in by_name or msgtype == IMAGE:
                    by_name[name] = topic
        for name, topic in sorted(by_name.items()):
            info = f"/{name}/camera_info"
            chosen.append(CameraTopics(name, topic, info if topic_types.get(info) == CAMERA_INFO else None))
    names = [c.name for c in chosen]
    if len(set(names)) != len(names):
        raise ConfigError(f"camera names must be unique, got {names}")
    if lidar:
        _check_type(topic_types, lidar, (POINT_CLOUD,), "LiDAR")
    else:
        clouds = sorted(t for t, m in topic_types.items() if m == POINT_CLOUD)
        if len(clouds) > 1:
            raise ConfigError(f"the bag has several PointCloud2 topics {clouds}; choose one with --lidar")
        lidar = clouds[0] if clouds else None
    if prompts is None:
        prompts = sorted(t for t, m in topic_types.items() if m == PROMPT)
    else:
        for topic in prompts:
            _check_type(topic_types, topic, (PROMPT,), "prompt")
    tf = tuple(t for t in _TF_TOPICS if topic_types.get(t) == TF_MESSAGE)
    if not chosen and lidar is None:
        raise ConfigError(f"no camera image or PointCloud2 topics in the bag; topics: {sorted(topic_types)}")
    return TopicSelection(tuple(chosen), lidar, tuple(prompts), tf)


# ---------------------------------------------------------------------------------- reading
class BagReader:
    """A rosbag2 bag (directory, or a single .mcap / .db3 file) opened for reading."""

    def __init__(self, path: str | Path, typestore: Any = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"bag {self.path} does not exist")
        self.store = typestore or bag_typestore()
        self.storage = storage_of(self.path)
        self._reader = Reader(self.path)

    def __enter__(self) -> BagReader:
        try:
            self._reader.open()
        except Exception as exc:  # rosbags raises its own error types per storage
            raise ConversionError(f"cannot open bag {self.path}: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()

    @property
    def connections(self) -> list[Any]:
        return list(self._reader.connections)

    @property
    def topic_types(self) -> dict[str, str]:
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topics: Iterable[str]) -> int:
        wanted = set(topics)
        return sum(c.msgcount for c in self._reader.connections if c.topic in wanted)

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, bag time in ns, raw CDR bytes) in time order."""
        conns = self._reader.connections
        if topics is not None:
            wanted = set(topics)
            conns = [c for c in conns if c.topic in wanted]
            if not conns:
                return
        yield from self._reader.messages(connections=conns)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        try:
            return self.store.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # malformed or differently defined message
            raise ConversionError(f"cannot decode a {msgtype} message: {exc}") from exc


# ---------------------------------------------------------------------------------- writing
class BagWriter:
    """A new rosbag2 bag: input connections copied as recorded, result topics added on first use."""

    def __init__(self, path: str | Path, storage: StoragePlugin, typestore: Any = None) -> None:
        self.path = Path(path)
        self.store = typestore or bag_typestore()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=storage)
        self._copied: dict[int, Any] = {}
        self._added: dict[str, Any] = {}
        self.skipped_topics: list[str] = []
        self.copied_topics: set[str] = set()

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    def set_custom_data(self, key: str, value: str) -> None:
        self._writer.set_custom_data(key, value)

    def copy_connections(self, connections: Iterable[Any]) -> None:
        """Add each input connection with its recorded definition, hash, format and QoS."""
        for conn in connections:
            msgdef = conn.msgdef.data if conn.msgdef else ""
            digest = conn.digest or ""
            kwargs: dict[str, Any] = {}
            if msgdef and digest:
                kwargs.update(msgdef=msgdef, rihs01=digest)
            elif conn.msgtype in self.store.fielddefs:
                kwargs.update(typestore=self.store)
            else:  # an old bag without definitions, of a type we do not know
                self.skipped_topics.append(conn.topic)
                continue
            ext = conn.ext
            self._copied[conn.id] = self._writer.add_connection(
                conn.topic, conn.msgtype, serialization_format=getattr(ext, "serialization_format", "cdr"),
                offered_qos_profiles=list(getattr(ext, "offered_qos_profiles", []) or []), **kwargs)
            self.copied_topics.add(conn.topic)

    def write_raw(self, connection: Any, timestamp: int, raw: bytes | memoryview) -> bool:
        """Copy one input message unchanged; False when its topic could not be copied."""
        out = self._copied.get(connection.id)
        if out is None:
            return False
        self._writer.write(out, timestamp, raw)
        return True

    def write(self, topic: str, msgtype: str, timestamp: int, msg: Any) -> None:
        """Serialize and write a result message; the topic is added on first use."""
        conn = self._added.get(topic)
        if topic in self.copied_topics:
            raise ConfigError(f"output topic {topic} is already in the input bag; choose another output namespace")
        if conn is None:
            conn = self._added[topic] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        elif conn.msgtype != msgtype:
            raise ConfigError(f"output topic {topic} already carries {conn.msgtype}, cannot write {msgtype}")
        self._writer.write(conn, timestamp, self.store.serialize_cdr(msg, msgtype))
