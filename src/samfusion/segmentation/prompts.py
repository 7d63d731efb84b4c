"""Prompt types shared by every backend.

Conventions (all backends): pixel coordinates of the original image, x to the right, y down;
boxes are (x_min, y_min, x_max, y_max); ``positive=True`` marks foreground points / positive
box exemplars. Images are H x W x 3 uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from samfusion.errors import PromptError

__all__ = [
    "PromptAction",
    "PointPrompt",
    "BoxPrompt",
    "ObjectPrompt",
    "ConceptPrompt",
    "PromptSet",
    "PromptUpdate",
]


class PromptAction(IntEnum):
    """What a prompt update does; values match sam_fusion/msg/Prompt ACTION_* constants."""

    ADD = 0
    REFINE = 1
    REMOVE = 2
    CLEAR = 3
    SEGMENT_ALL = 4


@dataclass(frozen=True)
class PointPrompt:
    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class BoxPrompt:
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    positive: bool = True

    def as_array(self) -> np.ndarray:
        return np.array([self.x_min, self.y_min, self.x_max, self.y_max], dtype=np.float64)


@dataclass(frozen=True)
class ObjectPrompt:
    """Prompts for one specific object (SAM 2 style): clicks, one box, or a previous mask."""

    object_id: int
    label: str = ""
    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    mask: np.ndarray | None = field(default=None, compare=False)

    def is_empty(self) -> bool:
        return not self.points and not self.boxes and self.mask is None


@dataclass(frozen=True)
class ConceptPrompt:
    """A text concept (SAM 3): every instance of ``text``, optionally refined by box exemplars."""

    text: str
    exemplars: tuple[BoxPrompt, ...] = ()


@dataclass(frozen=True)
class PromptSet:
    """Everything a backend is asked to segment in one image."""

    objects: tuple[ObjectPrompt, ...] = ()
    concepts: tuple[ConceptPrompt, ...] = ()
    everything: bool = False

    def is_empty(self) -> bool:
        return not self.objects and not self.concepts and not self.everything

    def validated(self, width: int, height: int) -> PromptSet:
        """Check every coordinate against a ``width`` x ``height`` image.

        Points must lie inside the image. Boxes must have positive size and overlap the image;
        a box that sticks out is clipped to the image. Raises PromptError naming the prompt.
        """
        return replace(
            self,
            objects=tuple(_validate_object(o, width, height) for o in self.objects),
            concepts=tuple(
                replace(c, exemplars=tuple(_clip_box(b, width, height, f"concept '{c.text}'")
                                           for b in c.exemplars))
                for c in self.concepts
            ),
        )


@dataclass(frozen=True)
class PromptUpdate:
    """One prompt message in core form: an action on the prompt store of a stream."""

    action: PromptAction
    object_id: int = 0
    label: str = ""
    points: tuple[PointPrompt, ...] = ()
    boxes: tuple[BoxPrompt, ...] = ()
    concepts: tuple[str, ...] = ()
    target: str = ""


def _validate_object(obj: ObjectPrompt, width: int, height: int) -> ObjectPrompt:
    where = f"object {obj.object_id}"
    for p in obj.points:
        if not (np.isfinite(p.x) and np.isfinite(p.y)):
            raise PromptError(f"{where}: point ({p.x}, {p.y}) is not finite")
        if not (0.0 <= p.x <= width and 0.0 <= p.y <= height):
            raise PromptError(
                f"{where}: point ({p.x:.1f}, {p.y:.1f}) is outside the {width}x{height} image"
            )
    if obj.mask is not None and obj.mask.shape[:2] != (height, width):
        raise PromptError(
            f"{where}: mask prompt is {obj.mask.shape[1]}x{obj.mask.shape[0]}, "
            f"image is {width}x{height}"
        )
    boxes = tuple(_clip_box(b, width, height, where) for b in obj.boxes)
    return replace(obj, boxes=boxes)


def _clip_box(box: BoxPrompt, width: int, height: int, where: str) -> BoxPrompt:
    values = box.as_array()
    if not np.all(np.isfinite(values)):
        raise PromptError(f"{where}: box {values.tolist()} is not finite")
    if box.x_max <= box.x_min or box.y_max <= box.y_min:
        raise PromptError(
            f"{where}: box {values.tolist()} is empty (need x_min < x_max and y_min < y_max)"
        )
    if box.x_max <= 0 or box.y_max <= 0 or box.x_min >= width or box.y_min >= height:
        raise PromptError(f"{where}: box {values.tolist()} is outside the {width}x{height} image")
    return BoxPrompt(
        max(0.0, box.x_min), max(0.0, box.y_min),
        min(float(width), box.x_max), min(float(height), box.y_max), box.positive,
    )
