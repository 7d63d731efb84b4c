"""Classical CPU backend: GrabCut and watershed seeded by box and click prompts. No weights, no GPU.

It serves box prompts and positive / negative point prompts; text concepts are refused with a
message naming the SAM 3 backend. Each object is segmented in a crop around its prompt,
downscaled to at most ``work_size`` pixels on the long side, so cost does not grow with the
image resolution. The mask is the union of GrabCut and a marker watershed grown from the same
seeds (box outside = background, box core and positive clicks = foreground), restricted to the
box; GrabCut follows colour, the watershed follows edges where colours are alike. Score (documented heuristic, GrabCut has no probability): the fraction of the
object's click prompts that the mask honours (positive inside, negative outside), times the fill
of the prompt box by the mask, clipped to [0, 1] (a box-filling mask with all clicks honoured
scores 1; a mask that fills under a fifth of its box scores proportionally less).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from samfusion.segmentation.base import (
    Capability,
    Instance,
    SegmentationBackend,
    check_image,
)
from samfusion.segmentation.config import BackendConfig
from samfusion.segmentation.prompts import ObjectPrompt, PromptSet

__all__ = ["ClassicalBackend"]

_SEED_RADIUS = 3  # pixels (at work resolution) painted around each click as a hard seed


@dataclass(frozen=True)
class _Crop:
    x0: int
    y0: int
    x1: int
    y1: int
    scale: float


class ClassicalBackend(SegmentationBackend):
    """GrabCut per prompted object (see module docstring)."""

    name = "classical"
    capabilities = frozenset({Capability.POINTS, Capability.BOXES, Capability.MASKS})

    def __init__(self, *, iterations: int = 4, work_size: int = 160, margin: float = 0.15,
                 click_window: float = 0.12, core: float = 0.25) -> None:
        self.iterations = iterations
        self.core = core
        self.work_size = work_size
        self.margin = margin
        self.click_window = click_window

    @classmethod
    def from_config(cls, config: BackendConfig) -> ClassicalBackend:
        return cls()

    def segment(self, image: np.ndarray, prompts: PromptSet) -> list[Instance]:
        height, width = check_image(image)
        prompts = self.check_prompts(prompts, height, width)
        return [self._segment_object(image, obj) for obj in prompts.objects if not obj.is_empty()]

    # ---- one object ------------------------------------------------------------------------
    def _segment_object(self, image: np.ndarray, obj: ObjectPrompt) -> Instance:
        height, width = image.shape[:2]
        box = self._prompt_box(obj, width, height)
        crop = self._crop(box, width, height)
        patch = image[crop.y0:crop.y1, crop.x0:crop.x1]
        work_w = max(2, int(round((crop.x1 - crop.x0) * crop.scale)))
        work_h = max(2, int(round((crop.y1 - crop.y0) * crop.scale)))
        small = cv2.resize(patch, (work_w, work_h), interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small[:, :, ::-1])  # GrabCut models colour in BGR order

        seeds = self._seeds(obj, box, crop, (work_h, work_w))
        fg_small = _grabcut(small, seeds, self.iterations) | _watershed(small, seeds)
        fg_small = _largest_component_with_seeds(fg_small.astype(np.uint8), obj, crop)

        mask = np.zeros((height, width), dtype=bool)
        full = cv2.resize(fg_small, (crop.x1 - crop.x0, crop.y1 - crop.y0),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
        mask[crop.y0:crop.y1, crop.x0:crop.x1] = full
        if obj.boxes:  # a box prompt bounds the object: nothing outside it
            b = obj.boxes[0]
            outside = np.ones_like(mask)
            outside[int(np.floor(b.y_min)):int(np.ceil(b.y_max)),
                    int(np.floor(b.x_min)):int(np.ceil(b.x_max))] = False
            mask[outside] = False
        return Instance(instance_id=obj.object_id, label=obj.label,
                        score=_score(mask, obj, box), mask=mask)

    def _seeds(self, obj: ObjectPrompt, box: tuple[float, float, float, float], crop: _Crop,
               shape: tuple[int, int]) -> np.ndarray:
        """Seed map at work resolution: 0 background, 1 unknown (inside the box), 2 foreground.

        The box interior is unknown, its outside background; a central ellipse (``core`` of the
        box size) and positive clicks are foreground, negative clicks background. The core keeps
        GrabCut from collapsing on small, dark objects.
        """
        work_h, work_w = shape
        seeds = np.zeros(shape, dtype=np.uint8)
        bx0, by0, bx1, by1 = self._to_work(box, crop)
        bx0, by0 = max(0, bx0), max(0, by0)
        bx1, by1 = min(work_w, max(bx1, bx0 + 1)), min(work_h, max(by1, by0 + 1))
        seeds[by0:by1, bx0:bx1] = 1
        if obj.mask is not None:
            prior = cv2.resize(obj.mask[crop.y0:crop.y1, crop.x0:crop.x1].astype(np.uint8),
                               (work_w, work_h), interpolation=cv2.INTER_NEAREST).astype(bool)
            seeds[prior] = 1
            core = cv2.erode(prior.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            seeds[core] = 2
        elif obj.boxes:
            center = ((bx0 + bx1) // 2, (by0 + by1) // 2)
            axes = (max(1, int(self.core * (bx1 - bx0) / 2)), max(1, int(self.core * (by1 - by0) / 2)))
            cv2.ellipse(seeds, center, axes, 0, 0, 360, 2, -1)
        for p in obj.points:
            u = int(np.clip((p.x - crop.x0) * crop.scale, 0, work_w - 1))
            v = int(np.clip((p.y - crop.y0) * crop.scale, 0, work_h - 1))
            cv2.circle(seeds, (u, v), _SEED_RADIUS, 2 if p.positive else 0, -1)
        return seeds

    def _prompt_box(self, obj: ObjectPrompt, width: int, height: int) -> tuple[float, float, float, float]:
        if obj.boxes:
            b = obj.boxes[0]
            return (b.x_min, b.y_min, b.x_max, b.y_max)
        if obj.mask is not None and obj.mask.any():
            ys, xs = np.nonzero(obj.mask)
            return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        pos = [p for p in obj.points if p.positive] or list(obj.points)
        xs = np.array([p.x for p in pos])
        ys = np.array([p.y for p in pos])
        half = self.click_window * max(width, height)
        return (max(0.0, xs.min() - half), max(0.0, ys.min() - half),
                min(float(width), xs.max() + half), min(float(height), ys.max() + half))

    def _crop(self, box: tuple[float, float, float, float], width: int, height: int) -> _Crop:
        x0, y0, x1, y1 = box
        mx = max(8.0, self.margin * (x1 - x0))
        my = max(8.0, self.margin * (y1 - y0))
        cx0, cy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        cx1, cy1 = int(min(width, np.ceil(x1 + mx))), int(min(height, np.ceil(y1 + my)))
        cx1, cy1 = max(cx1, cx0 + 1), max(cy1, cy0 + 1)
        scale = min(1.0, self.work_size / float(max(cx1 - cx0, cy1 - cy0)))
        return _Crop(cx0, cy0, cx1, cy1, scale)

    @staticmethod
    def _to_work(box: tuple[float, float, float, float], crop: _Crop) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = box
        s = crop.scale
        return (int(np.floor((x0 - crop.x0) * s)), int(np.floor((y0 - crop.y0) * s)),
                int(np.ceil((x1 - crop.x0) * s)), int(np.ceil((y1 - crop.y0) * s)))


def _grabcut(bgr: np.ndarray, seeds: np.ndarray, iterations: int) -> np.ndarray:
    gc = np.choose(seeds, [cv2.GC_BGD, cv2.GC_PR_FGD, cv2.GC_FGD]).astype(np.uint8)
    if not (np.any(seeds == 0) and np.any(seeds > 0)):
        return seeds > 0
    # GrabCut's k-means start draws from OpenCV's per-thread RNG: seed it so the same input gives
    # the same mask in every process and thread (node, offline command, tests).
    cv2.setRNGSeed(0)
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def _watershed(bgr: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Grow the foreground seeds against the background along image edges."""
    markers = np.zeros(seeds.shape, dtype=np.int32)
    markers[seeds == 0] = 1
    markers[seeds == 2] = 2
    if not (np.any(markers == 1) and np.any(markers == 2)):
        return seeds == 2
    cv2.watershed(bgr, markers)
    return markers == 2


def _largest_component_with_seeds(fg: np.ndarray, obj: ObjectPrompt, crop: _Crop) -> np.ndarray:
    """Keep the connected components that hold a positive click, else the largest one."""
    count, labels = cv2.connectedComponents(fg, connectivity=8)
    if count <= 2:
        return fg
    keep: set[int] = set()
    h, w = fg.shape
    for p in obj.points:
        if p.positive:
            u = int(np.clip((p.x - crop.x0) * crop.scale, 0, w - 1))
            v = int(np.clip((p.y - crop.y0) * crop.scale, 0, h - 1))
            if labels[v, u] > 0:
                keep.add(int(labels[v, u]))
    if not keep:
        sizes = np.bincount(labels.ravel(), minlength=count)
        sizes[0] = 0
        keep.add(int(np.argmax(sizes)))
    return np.isin(labels, list(keep)).astype(np.uint8)


def _score(mask: np.ndarray, obj: ObjectPrompt, box: tuple[float, float, float, float]) -> float:
    honoured = 1.0
    if obj.points:
        h, w = mask.shape
        ok = 0
        for p in obj.points:
            inside = bool(mask[min(int(p.y), h - 1), min(int(p.x), w - 1)])
            ok += int(inside == p.positive)
        honoured = ok / len(obj.points)
    x0, y0, x1, y1 = box
    box_area = max(1.0, (x1 - x0) * (y1 - y0))
    fill = min(1.0, mask.sum() / box_area / 0.2) if obj.boxes else (1.0 if mask.any() else 0.0)
    return float(np.clip(honoured * fill, 0.0, 1.0))
