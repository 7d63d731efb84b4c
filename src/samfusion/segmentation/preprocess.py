"""Torch pre- and post-processing for the SAM backends, on the model's device.

Numerics follow the transformers image processors of SAM 2 and SAM 3 (``Sam2ImageProcessor``,
``Sam3ImageProcessor``): the whole image is resized to the checkpoint's fixed ``size`` (no
aspect-preserving resize, no padding: ``do_pad`` is off for both), bilinear with antialiasing on
uint8 pixels exactly as torchvision does it (the uint8 kernel on CPU, float then round on GPU),
then rescaled and normalised with the checkpoint's mean / std in one fused step. Prompt
coordinates map original pixels to model pixels per axis (x * W_in / W, y * H_in / H), the
same scaling the processors apply, so any aspect ratio maps exactly. Masks come back as
low-resolution logits and are upsampled straight to the original size (bilinear,
align_corners=False) before thresholding, as ``post_process_masks`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samfusion.errors import BackendError
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt

__all__ = [
    "ImageSpec",
    "FrameGeometry",
    "ImageTransform",
    "upsample_logits",
    "select_best_mask",
    "stability_score",
    "mask_nms",
    "masks_to_model",
    "point_grid",
]


@dataclass(frozen=True)
class ImageSpec:
    """What the checkpoint's image processor does: target size, mean, std and rescale factor."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1.0 / 255.0

    @classmethod
    def from_processor_dict(cls, data: dict, default: ImageSpec) -> ImageSpec:
        """Read ``size``, ``image_mean``, ``image_std``, ``rescale_factor`` of a processor config."""
        size = data.get("size") or {}
        height = int(size.get("height", size.get("longest_edge", default.height)))
        width = int(size.get("width", size.get("longest_edge", default.width)))
        mean = tuple(float(v) for v in data.get("image_mean", default.mean))
        std = tuple(float(v) for v in data.get("image_std", default.std))
        if len(mean) != 3 or len(std) != 3:
            raise BackendError(f"processor config has mean {mean} / std {std}; expected 3 values each")
        return cls(height, width, mean, std,  # type: ignore[arg-type]
                   float(data.get("rescale_factor", default.rescale_factor)))


@dataclass(frozen=True)
class FrameGeometry:
    """Original image size and model input size; maps prompt coordinates between them."""

    height: int
    width: int
    input_height: int
    input_width: int

    @property
    def scale_xy(self) -> tuple[float, float]:
        return (self.input_width / self.width, self.input_height / self.height)

    def points_to_model(self, points: Sequence[PointPrompt]) -> np.ndarray:
        """(P, 2) model-input pixel coordinates of original-pixel points."""
        sx, sy = self.scale_xy
        return np.array([[p.x * sx, p.y * sy] for p in points], dtype=np.float32).reshape(-1, 2)

    def boxes_to_model(self, boxes: Sequence[BoxPrompt]) -> np.ndarray:
        """(B, 4) model-input pixel (x_min, y_min, x_max, y_max) of original-pixel boxes."""
        sx, sy = self.scale_xy
        return np.array([[b.x_min * sx, b.y_min * sy, b.x_max * sx, b.y_max * sy] for b in boxes],
                        dtype=np.float32).reshape(-1, 4)

    def boxes_to_cxcywh(self, boxes: Sequence[BoxPrompt]) -> np.ndarray:
        """(B, 4) boxes normalised to [0, 1] as (cx, cy, w, h): SAM 3 exemplar format."""
        xyxy = np.array([[b.x_min / self.width, b.y_min / self.height,
                          b.x_max / self.width, b.y_max / self.height] for b in boxes],
                        dtype=np.float32).reshape(-1, 4)
        return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                         xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)


class ImageTransform:
    """uint8 H x W x 3 numpy image -> normalised (1, 3, H_in, W_in) tensor in the model dtype."""

    def __init__(self, spec: ImageSpec, device: torch.device, dtype: torch.dtype) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        # fused rescale + normalise, as the processors do: (x - mean / r) / (std / r)
        scale = 1.0 / spec.rescale_factor
        self._mean = (torch.tensor(spec.mean, device=self.device) * scale).view(1, 3, 1, 1)
        self._std = (torch.tensor(spec.std, device=self.device) * scale).view(1, 3, 1, 1)

    def geometry(self, height: int, width: int) -> FrameGeometry:
        return FrameGeometry(height, width, self.spec.height, self.spec.width)

    def resize_uint8(self, image: np.ndarray, native: bool | None = None) -> torch.Tensor:
        """Resize like torchvision's uint8 bilinear antialiased resize; returns (1, 3, H_in, W_in) uint8.

        ``native``: use torch's uint8 kernel (torchvision's choice on CPU) rather than float
        interpolation then rounding (its choice on GPU); default by device.
        """
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
        pixels = pixels.permute(2, 0, 1).unsqueeze(0)
        size = (self.spec.height, self.spec.width)
        if tuple(pixels.shape[-2:]) == size:
            return pixels
        if native is None:
            native = self.device.type == "cpu"  # torch has a native uint8 antialias kernel on CPU only
        if native:
            return F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
        resized = F.interpolate(pixels.float(), size=size, mode="bilinear", align_corners=False,
                                antialias=True)
        return resized.round_().clamp_(0, 255).to(torch.uint8)

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, FrameGeometry]:
        height, width = image.shape[:2]
        resized = self.resize_uint8(image)
        pixel_values = (resized.float() - self._mean) / self._std
        return pixel_values.to(self.dtype), self.geometry(height, width)


def upsample_logits(logits: torch.Tensor, geometry: FrameGeometry) -> torch.Tensor:
    """(N, h, w) low-resolution logits -> (N, H, W) float logits at the original image size."""
    if logits.shape[0] == 0:
        return logits.new_zeros((0, geometry.height, geometry.width), dtype=torch.float32)
    return F.interpolate(logits.float().unsqueeze(1), size=(geometry.height, geometry.width),
                         mode="bilinear", align_corners=False).squeeze(1)


def select_best_mask(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick, per object, the multimask output with the highest predicted IoU.

    ``masks`` (N, K, h, w), ``iou`` (N, K) -> masks (N, h, w), iou (N,). Stays on the device.
    """
    best = iou.argmax(dim=-1)
    index = torch.arange(masks.shape[0], device=masks.device)
    return masks[index, best], iou[index, best]


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks at ``threshold + offset`` and ``threshold - offset``; (N, h, w) -> (N,)."""
    inner = (logits > threshold + offset).flatten(1).sum(-1).float()
    outer = (logits > threshold - offset).flatten(1).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1.0), torch.ones_like(outer))


def mask_nms(masks: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Duplicate removal: keep flags (N,) bool for (N, h, w) bool masks.

    Fast NMS (one vectorised pass, no host round trip): a mask is dropped when any
    higher-scoring mask overlaps it with IoU above ``iou_threshold``. Unlike sequential greedy
    NMS, a mask whose only suppressor was itself dropped stays dropped; with the thresholds
    used here (>= 0.5) such chains are rare and only ever remove near-duplicates.
    """
    count = masks.shape[0]
    if count <= 1:
        return torch.ones(count, dtype=torch.bool, device=masks.device)
    order = torch.argsort(scores, descending=True)
    flat = masks[order].flatten(1).float()
    inter = flat @ flat.T
    area = flat.sum(-1)
    union = area[:, None] + area[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))
    # upper triangle: row ranks above column; a column is suppressed by any row above it
    suppressed = torch.triu(iou > iou_threshold, diagonal=1).any(dim=0)
    keep = torch.empty(count, dtype=torch.bool, device=masks.device)
    keep[order] = ~suppressed
    return keep


def masks_to_model(masks: Sequence[np.ndarray], size: tuple[int, int], device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """Mask prompts (H x W bool) -> (N, 1, size) binary float tensor, as the SAM 2 video processor.

    Resized bilinear with antialiasing and re-binarised at 0.5.
    """
    stacked = torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) for m in masks]))
    stacked = stacked.to(device).unsqueeze(1)
    if tuple(stacked.shape[-2:]) != size:
        stacked = F.interpolate(stacked, size=size, mode="bilinear", align_corners=False, antialias=True)
        stacked = (stacked >= 0.5).float()
    return stacked.to(dtype)


def point_grid(points_per_side: int, geometry: FrameGeometry) -> np.ndarray:
    """(P*P, 2) evenly spaced points in model-input pixels (cell centres), for segment-everything."""
    offset = 1.0 / (2 * points_per_side)
    ticks = np.linspace(offset, 1 - offset, points_per_side, dtype=np.float32)
    xs, ys = np.meshgrid(ticks * geometry.input_width, ticks * geometry.input_height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)
