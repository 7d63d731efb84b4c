"""Prompt decoding for the SAM 2 family (SAM 2, SAM 2.1, SAM 3 tracker), batched over objects.

One image embedding per frame is shared by every object: the frame's features are expanded
(a view, no copy) along the batch dimension and all objects of a group go through the prompt
encoder and mask decoder in one call. Objects are grouped by prompt layout (number of prompt
tokens, mask prompt or not) so that no padding tokens change any object's result; in practice
a frame has one or two groups.

Prompt tokens follow the SAM 2 video processor: a box becomes its two corners with labels 2
and 3, placed before the clicks (labels 1 / 0); the prompt encoder appends its "not a point"
token. Multimask output is used for at most ``multimask_max_pt_num`` tokens (a single click),
and the best of the three masks is chosen by predicted IoU on the device. Where the model says
the object is absent (object score logit <= 0) the mask logits are replaced by a large negative
value, as the SAM 2 video model does. Score = predicted IoU x sigmoid(object score logit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from samfusion.segmentation.base import Instance
from samfusion.segmentation.preprocess import (
    FrameGeometry,
    mask_nms,
    masks_to_model,
    point_grid,
    select_best_mask,
    stability_score,
    upsample_logits,
)
from samfusion.segmentation.prompts import ObjectPrompt

__all__ = ["NO_OBJECT_LOGIT", "FrameFeatures", "Decoded", "SamHead", "EverythingParams", "to_instances"]

NO_OBJECT_LOGIT = -1024.0


@dataclass
class FrameFeatures:
    """Vision features of one frame, as SAM 2 ``get_image_features`` returns them.

    ``feats`` / ``pos``: three levels, each flattened to (H*W, 1, C), finest first; the two fine
    levels are already projected by the mask decoder's conv_s0 / conv_s1.
    """

    feats: list[torch.Tensor]
    pos: list[torch.Tensor]
    geometry: FrameGeometry


@dataclass
class Decoded:
    """Decoder result for N objects, all on the device."""

    low_res: torch.Tensor  # (N, h, w) chosen mask logits
    iou: torch.Tensor  # (N,) predicted IoU of the chosen mask
    object_logits: torch.Tensor  # (N,) object presence logit
    tokens: torch.Tensor  # (N, C) SAM output token of the chosen mask (for object pointers)
    pointer: torch.Tensor | None = None  # (N, C) object pointer, when computed by the producer

    @property
    def scores(self) -> torch.Tensor:
        return (self.iou.float().clamp(0, 1) * torch.sigmoid(self.object_logits.float()))


@dataclass(frozen=True)
class EverythingParams:
    """Automatic mask generation: a point grid, then IoU / stability filters and mask NMS.

    A threshold of 0 disables its filter.
    """

    points_per_side: int = 16
    points_per_batch: int = 64
    iou_threshold: float = 0.88
    stability_threshold: float = 0.95
    stability_offset: float = 1.0
    nms_iou: float = 0.7


class SamHead:
    """Prompt encoder + mask decoder of a loaded SAM 2-family model (image or video variant)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.sizes = [tuple(s) for s in model.backbone_feature_sizes]
        first = next(model.mask_decoder.parameters())
        self.dtype = first.dtype
        self.device = first.device
        encoder = model.prompt_encoder
        self.input_size = int(encoder.input_image_size)
        self.mask_input_size = tuple(encoder.mask_input_size)
        config = model.config
        self.multimask_min = int(getattr(config, "multimask_min_pt_num", 0))
        self.multimask_max = int(getattr(config, "multimask_max_pt_num", 1))
        self._image_pe: torch.Tensor | None = None

    # ---- features -------------------------------------------------------------------------
    def features(self, pixel_values: torch.Tensor, geometry: FrameGeometry) -> FrameFeatures:
        """Run the model's own vision encoder (one call per frame)."""
        out = self.model.get_image_features(pixel_values, return_dict=True)
        return FrameFeatures(list(out.fpn_hidden_states), list(out.fpn_position_encoding), geometry)

    def image_embeddings(self, features: FrameFeatures, top: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[s0, s1, top] as (1, C, h, w); ``top`` defaults to the memory-free top level."""
        levels = [f.permute(1, 2, 0).reshape(f.shape[1], -1, *size)
                  for f, size in zip(features.feats[:-1], self.sizes[:-1])]
        if top is None:
            flat = features.feats[-1] + self.model.no_memory_embedding
            top = flat.permute(1, 2, 0).reshape(flat.shape[1], -1, *self.sizes[-1])
        return levels + [top]

    def image_pe(self) -> torch.Tensor:
        if self._image_pe is None:
            self._image_pe = self.model.get_image_wide_positional_embeddings()
        return self._image_pe

    # ---- decoding -------------------------------------------------------------------------
    def decode(self, embeddings: list[torch.Tensor], points: torch.Tensor | None,
               labels: torch.Tensor | None, dense_masks: torch.Tensor | None,
               multimask: bool) -> Decoded:
        """Decode N objects at once.

        ``embeddings``: [s0, s1, top], batch 1 (shared) or N (per object, e.g. memory-conditioned).
        ``points`` (N, 1, P, 2) model pixels, ``labels`` (N, 1, P); ``dense_masks`` (N, 1, h, w).
        """
        count = next(t.shape[0] for t in (points, dense_masks, embeddings[-1]) if t is not None)
        if points is None:  # no sparse prompt: one "not a point" token, as the model's forward does
            points = torch.zeros(count, 1, 1, 2, dtype=self.dtype, device=self.device)
            labels = -torch.ones(count, 1, 1, dtype=torch.int32, device=self.device)
        if dense_masks is not None and tuple(dense_masks.shape[-2:]) != self.mask_input_size:
            dense_masks = F.interpolate(dense_masks.float(), size=self.mask_input_size, mode="bilinear",
                                        align_corners=False, antialias=True).to(self.dtype)
        sparse, dense = self.model.prompt_encoder(input_points=points, input_labels=labels,
                                                  input_boxes=None, input_masks=dense_masks)
        s0, s1, top = (e.expand(count, -1, -1, -1) for e in embeddings)
        masks, iou, tokens, object_logits = self.model.mask_decoder(
            image_embeddings=top,
            image_positional_embeddings=self.image_pe().expand(count, -1, -1, -1),
            sparse_prompt_embeddings=sparse.to(self.dtype),
            dense_prompt_embeddings=dense.to(self.dtype),
            multimask_output=multimask,
            high_resolution_features=[s0, s1],
        )
        masks, iou, tokens = masks[:, 0], iou[:, 0], tokens[:, 0]  # drop the point-batch axis
        object_logits = object_logits.reshape(count)
        masks = torch.where((object_logits > 0).view(count, 1, 1, 1), masks,
                            torch.full_like(masks, NO_OBJECT_LOGIT))
        best, best_iou = select_best_mask(masks, iou)
        if multimask:
            token = tokens[torch.arange(count, device=tokens.device), iou.argmax(dim=-1)]
        else:
            token = tokens[:, 0]
        return Decoded(best, best_iou, object_logits, token)

    def use_multimask(self, token_count: int) -> bool:
        return self.multimask_min <= token_count <= self.multimask_max

    def decode_objects(self, features: FrameFeatures, objects: Sequence[ObjectPrompt],
                       embeddings: list[torch.Tensor] | None = None) -> Decoded:
        """Decode prompted objects in layout groups; results in the order of ``objects``."""
        embeddings = embeddings if embeddings is not None else self.image_embeddings(features)
        groups: dict[tuple[int, bool], list[int]] = {}
        for index, obj in enumerate(objects):
            groups.setdefault((_token_count(obj), obj.mask is not None), []).append(index)
        parts: list[tuple[list[int], Decoded]] = []
        for (tokens, has_mask), members in groups.items():
            group = [objects[i] for i in members]
            points = labels = dense = None
            if tokens:
                points, labels = self.prompt_tokens(group, features.geometry)
            if has_mask:
                dense = masks_to_model([o.mask for o in group], (self.input_size, self.input_size),
                                       self.device, self.dtype)
            parts.append((members, self.decode(embeddings, points, labels, dense, self.use_multimask(tokens))))
        return _merge(parts, len(objects))

    def prompt_tokens(self, objects: Sequence[ObjectPrompt],
                      geometry: FrameGeometry) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, P, 2) float points and (N, 1, P) int labels: box corners (2, 3) then clicks."""
        coords, labels = [], []
        for obj in objects:
            xy = [geometry.boxes_to_model(obj.boxes[:1]).reshape(-1, 2), geometry.points_to_model(obj.points)]
            coords.append(np.concatenate(xy, axis=0))
            labels.append([2, 3] * min(1, len(obj.boxes)) + [1 if p.positive else 0 for p in obj.points])
        points = torch.from_numpy(np.stack(coords)).to(self.device, non_blocking=True)
        label_t = torch.tensor(labels, dtype=torch.int32).to(self.device, non_blocking=True)
        return points.unsqueeze(1).to(self.dtype), label_t.unsqueeze(1)

    # ---- segment everything ---------------------------------------------------------------
    def everything(self, features: FrameFeatures, params: EverythingParams,
                   max_masks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Automatic masks: (K, h, w) low-res logits and (K,) scores after filters and NMS."""
        grid = torch.from_numpy(point_grid(params.points_per_side, features.geometry)).to(self.device)
        embeddings = self.image_embeddings(features)
        all_masks, all_scores = [], []
        for start in range(0, grid.shape[0], params.points_per_batch):
            chunk = grid[start:start + params.points_per_batch]
            n = chunk.shape[0]
            points = chunk.view(n, 1, 1, 2).to(self.dtype)
            labels = torch.ones(n, 1, 1, dtype=torch.int32, device=self.device)
            sparse, dense = self.model.prompt_encoder(input_points=points, input_labels=labels,
                                                      input_boxes=None, input_masks=None)
            s0, s1, top = (e.expand(n, -1, -1, -1) for e in embeddings)
            masks, iou, _, object_logits = self.model.mask_decoder(
                image_embeddings=top, image_positional_embeddings=self.image_pe().expand(n, -1, -1, -1),
                sparse_prompt_embeddings=sparse.to(self.dtype), dense_prompt_embeddings=dense.to(self.dtype),
                multimask_output=True, high_resolution_features=[s0, s1])
            masks = masks[:, 0].flatten(0, 1).float()  # every multimask output is a candidate
            presence = torch.sigmoid(object_logits.reshape(n, 1).float())
            scores = (iou[:, 0].float() * presence).flatten()
            keep = torch.ones_like(scores, dtype=torch.bool)
            if params.iou_threshold > 0:  # 0 disables a filter, as in the transformers AMG
                keep &= scores > params.iou_threshold
            if params.stability_threshold > 0:
                stable = stability_score(masks, 0.0, params.stability_offset)
                keep &= stable > params.stability_threshold
            all_masks.append(masks[keep])
            all_scores.append(scores[keep])
        masks = torch.cat(all_masks)
        scores = torch.cat(all_scores)
        keep = mask_nms(masks > 0, scores, params.nms_iou)
        masks, scores = masks[keep], scores[keep]
        order = torch.argsort(scores, descending=True)[:max_masks]
        return masks[order], scores[order]


def _token_count(obj: ObjectPrompt) -> int:
    return len(obj.points) + 2 * min(1, len(obj.boxes))


def _merge(parts: list[tuple[list[int], Decoded]], count: int) -> Decoded:
    if len(parts) == 1 and parts[0][0] == list(range(count)):
        return parts[0][1]
    order = torch.tensor([i for members, _ in parts for i in members])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(count)
    inverse = inverse.to(parts[0][1].low_res.device)

    def cat(field: str) -> torch.Tensor:
        return torch.cat([getattr(d, field) for _, d in parts])[inverse]

    return Decoded(cat("low_res"), cat("iou"), cat("object_logits"), cat("tokens"))


def to_instances(low_res: torch.Tensor, scores: torch.Tensor, geometry: FrameGeometry,
                 ids: Sequence[int], labels: Sequence[str], mask_threshold: float,
                 probabilities: bool = False) -> list[Instance]:
    """Upsample, threshold and bring masks to the host: the frame's only device -> host copy.

    ``probabilities``: upsample sigmoid probabilities and threshold at sigmoid(mask_threshold)
    (SAM 3 detector post-processing) instead of the logits (SAM 2 post-processing).
    """
    if low_res.shape[0] == 0:
        return []
    if probabilities:
        up = upsample_logits(torch.sigmoid(low_res.float()), geometry)
        binary = up > float(torch.sigmoid(torch.tensor(mask_threshold)))
    else:
        binary = upsample_logits(low_res, geometry) > mask_threshold
    masks = binary.cpu().numpy()
    values = scores.float().cpu().numpy()
    return [Instance(instance_id=int(i), label=str(label), score=float(s), mask=m)
            for i, label, s, m in zip(ids, labels, values, masks)]
