"""Latest-frame buffers and camera/LiDAR pairing by approximate time (no message_filters).

Pure Python (no rclpy) so the pairing rules are unit-tested: every camera keeps its last few
frames (bounded), the newest unprocessed one is what gets segmented, older unprocessed ones are
skipped and counted; one pending cloud at a time, a newer cloud replaces (and counts) an older one.
Calibration that a driver stamps per frame (CameraInfo with each image's stamp) is tracked so a
frame is labeled with its own calibration, not the previous frame's one that happened to be applied.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["Stamped", "CameraBuffer", "CloudSlot", "CalibrationStamps", "nearest_within"]

T = TypeVar("T")


@dataclass
class Stamped(Generic[T]):
    stamp: float
    value: T
    arrival: float = 0.0
    processed: bool = False


def nearest_within(items: list[Stamped[Any]], stamp: float, max_skew: float) -> Stamped[Any] | None:
    """The item nearest in time to ``stamp`` if it is within ``max_skew`` seconds."""
    best = min(items, key=lambda it: abs(it.stamp - stamp), default=None)
    if best is None or abs(best.stamp - stamp) > max_skew:
        return None
    return best


@dataclass
class CameraBuffer:
    """Last ``depth`` images of one camera and counters of what was skipped."""

    depth: int = 4
    images: deque = field(default_factory=deque)
    skipped: int = 0

    def push(self, item: Stamped[Any]) -> None:
        if len(self.images) >= self.depth:
            old = self.images.popleft()
            if not old.processed:
                self.skipped += 1
        self.images.append(item)

    def take_newest_unprocessed(self) -> Stamped[Any] | None:
        """The newest unprocessed image; older unprocessed ones are marked skipped."""
        newest = None
        for item in reversed(self.images):
            if not item.processed:
                newest = item
                break
        if newest is None:
            return None
        for item in self.images:
            if item is not newest and not item.processed and item.stamp < newest.stamp:
                item.processed = True
                self.skipped += 1
        newest.processed = True
        return newest


class CloudSlot:
    """One pending cloud; a newer one replaces it and the replaced one is counted as dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: Stamped[Any] | None = None
        self.dropped = 0

    def put(self, item: Stamped[Any]) -> None:
        with self._lock:
            if self._item is not None:
                self.dropped += 1
            self._item = item

    def peek(self) -> Stamped[Any] | None:
        with self._lock:
            return self._item

    def take(self, item: Stamped[Any]) -> bool:
        """Remove ``item`` if it is still the pending one."""
        with self._lock:
            if self._item is item:
                self._item = None
                return True
            return False


class CalibrationStamps:
    """Stamp of the calibration in use per (kind, camera), and which streams are stamped per frame.

    A stream becomes *per frame* (for good) once the calibration in use carries the stamp of an
    image being segmented: drivers that publish CameraInfo with every image do that. For such a
    stream, a frame whose stamp is newer than the calibration in use must wait for its own (its
    CameraInfo may arrive a moment after the image). A calibration published once (latched, or a
    static file) never becomes per frame, so it never makes anything wait.
    """

    TOLERANCE_S = 1e-6

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], float] = {}
        self._per_frame: set[tuple[str, str]] = set()

    def applied(self, kind: str, camera: str, stamp: float) -> None:
        self._latest[(kind, camera)] = stamp

    def image_segmented(self, camera: str, stamp: float) -> None:
        for key, latest in self._latest.items():
            if key[1] == camera and abs(latest - stamp) <= self.TOLERANCE_S:
                self._per_frame.add(key)

    def behind(self, camera: str, stamp: float) -> list[str]:
        """Kinds of per-frame calibration of ``camera`` that are older than a frame at ``stamp``."""
        return sorted(kind for kind, cam in self._per_frame
                      if cam == camera and self._latest[(kind, cam)] < stamp - self.TOLERANCE_S)
