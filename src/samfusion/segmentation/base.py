"""The backend interface every segmentation model implements, and the instance result type.

A backend is built once (weights loaded) and shared by every stream; per-stream state lives in
a :class:`BackendStream` object returned by :meth:`SegmentationBackend.create_stream`, so one
loaded model serves many cameras. Backends take H x W x 3 uint8 RGB images and
:class:`~samfusion.segmentation.prompts.PromptSet` prompts in original-image pixel coordinates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Sequence

import numpy as np

from samfusion.errors import BackendError, PromptError
from samfusion.segmentation.prompts import PromptSet

__all__ = [
    "Capability",
    "Instance",
    "SegmentationBackend",
    "BackendStream",
    "ReplayStream",
    "check_image",
    "instances_to_id_image",
]


class Capability(str, Enum):
    POINTS = "points"
    BOXES = "boxes"
    MASKS = "masks"
    TEXT = "text"
    EVERYTHING = "everything"
    VIDEO = "video"  # the stream carries memory between frames (not just replayed prompts)


@dataclass
class Instance:
    """One segmented object.

    ``instance_id`` is the prompt's object id for object prompts, and 0 for concept /
    everything detections until a tracker assigns one. ``mask`` is H x W bool.
    """

    instance_id: int
    label: str
    score: float
    mask: np.ndarray

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Tight pixel box (x_min, y_min, x_max, y_max), max exclusive; zeros for empty masks."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        if rows.size == 0:
            return (0, 0, 0, 0)
        return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def check_image(image: np.ndarray) -> tuple[int, int]:
    """Validate an H x W x 3 uint8 image and return (height, width)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise BackendError(f"expected an H x W x 3 RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise BackendError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise BackendError(f"image is empty ({image.shape[1]}x{image.shape[0]})")
    return int(image.shape[0]), int(image.shape[1])


def instances_to_id_image(instances: Sequence[Instance], height: int, width: int) -> np.ndarray:
    """Paint instances into a uint16 id image (0 = background).

    Where masks overlap, the higher-scoring instance wins (painted last).
    """
    ids = np.zeros((height, width), dtype=np.uint16)
    for inst in sorted(instances, key=lambda i: i.score):
        if inst.instance_id <= 0 or inst.instance_id > 0xFFFF:
            raise BackendError(f"instance id {inst.instance_id} does not fit a mono16 id image")
        ids[inst.mask] = inst.instance_id
    return ids


class BackendStream(ABC):
    """Per-stream (per-camera) state of a backend; one per camera, created by the backend."""

    #: True when ``step`` can use image features computed by ``backend.encode_many`` (batched
    #: over cameras) instead of encoding the frame itself.
    accepts_features: ClassVar[bool] = False

    @abstractmethod
    def step(self, image: np.ndarray, prompts: PromptSet, changed: frozenset[int],
             features: object | None = None) -> list[Instance]:
        """Segment the next frame of the stream.

        ``prompts`` holds every active object / concept prompt of the stream; ``changed`` the
        object ids whose prompts were added or refined since the previous step (video backends
        condition on those prompts on this frame and propagate the others from memory).
        ``features``: this frame's encoder output when the caller batched several cameras
        (only for streams with ``accepts_features``). Returned object instances carry their
        prompt's ``object_id``.
        """

    def remove(self, object_id: int) -> None:
        """Forget an object (drop its memory)."""

    def reset(self) -> None:
        """Forget everything (scene change)."""


class ReplayStream(BackendStream):
    """Stream for image-only backends: re-run every prompt on every frame."""

    def __init__(self, backend: SegmentationBackend) -> None:
        self._backend = backend

    def step(self, image: np.ndarray, prompts: PromptSet, changed: frozenset[int],
             features: object | None = None) -> list[Instance]:
        return self._backend.segment(image, prompts)


class SegmentationBackend(ABC):
    """A segmentation model. ``segment`` is stateless; streams carry per-camera state."""

    name: ClassVar[str] = "abstract"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @abstractmethod
    def segment(self, image: np.ndarray, prompts: PromptSet) -> list[Instance]:
        """Segment one image. Raises PromptError for prompts this backend cannot serve."""

    def create_stream(self) -> BackendStream:
        return ReplayStream(self)

    def check_prompts(self, prompts: PromptSet, height: int, width: int) -> PromptSet:
        """Validate coordinates and capabilities; returns prompts with boxes clipped."""
        if prompts.concepts and Capability.TEXT not in self.capabilities:
            raise PromptError(self._text_refusal())
        if prompts.everything and Capability.EVERYTHING not in self.capabilities:
            raise PromptError(f"backend '{self.name}' cannot segment everything without prompts")
        for obj in prompts.objects:
            if obj.points and Capability.POINTS not in self.capabilities:
                raise PromptError(f"backend '{self.name}' does not take point prompts")
            if obj.boxes and Capability.BOXES not in self.capabilities:
                raise PromptError(f"backend '{self.name}' does not take box prompts")
            if obj.mask is not None and Capability.MASKS not in self.capabilities:
                raise PromptError(f"backend '{self.name}' does not take mask prompts")
        return prompts.validated(width, height)

    def _text_refusal(self) -> str:
        return (
            f"backend '{self.name}' cannot take text concepts; use backend sam3 (node: backend:=sam3, "
            "command line: --backend sam3) with a SAM 3 checkpoint (facebook/sam3 or a local directory) "
            "to segment by text"
        )
