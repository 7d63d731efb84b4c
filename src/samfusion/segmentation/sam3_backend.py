"""SAM 3 backends: text concepts (``Sam3VideoModel``'s detector) and the SAM 3 tracker.

:class:`Sam3Backend` loads the full SAM 3 checkpoint (``facebook/sam3``, model type
``sam3_video``) once: its detector segments every instance of a text concept (optionally
refined by positive / negative box exemplars), and its tracker serves point, box and mask
prompts and live tracking. Both read one image embedding per frame: the ViT backbone runs once,
then the detector's neck feeds the concept detector and the tracker's neck feeds the tracker
(the arrangement ``Sam3VideoModel`` uses). Concept detections come back with instance id 0 and
the concept text as label; the stream's :class:`ObjectTracker` gives them ids by mask IoU.
Detections are kept when sigmoid(class logit) x sigmoid(presence logit) exceeds the score
threshold (the ``Sam3Processor`` score), duplicates are removed per concept by mask NMS, and at
most ``max_objects`` are returned. Text embeddings are cached per concept text.

:class:`Sam3TrackerBackend` loads only the tracker (``Sam3TrackerVideoModel``, which reads the
same checkpoint), for points, boxes, masks and tracking without the detector's memory cost.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from samfusion.errors import PromptError
from samfusion.segmentation.base import Capability, Instance
from samfusion.segmentation.checkpoints import (
    SAM3_IMAGE_SPEC,
    load_image_spec,
    load_tokenizer,
    maybe_compile,
)
from samfusion.segmentation.config import BackendConfig
from samfusion.segmentation.preprocess import FrameGeometry, ImageSpec, mask_nms
from samfusion.segmentation.prompts import ConceptPrompt, PromptSet
from samfusion.segmentation.sam2_backend import PromptableSamBackend, _batch_item
from samfusion.segmentation.sam_head import FrameFeatures, to_instances

__all__ = ["Sam3Backend", "Sam3TrackerBackend", "Sam3Frame"]

_TEXT_LENGTH = 32  # Sam3Processor pads / truncates text to 32 tokens
_TEXT_CACHE = 64  # concept texts whose embeddings are kept
_PAD_LABEL = -10  # Sam3Processor's padding label for missing exemplar boxes


@dataclass
class Sam3Frame(FrameFeatures):
    """Tracker features plus the detector's vision output of the same frame."""

    vision: Any = None


class Sam3TrackerBackend(PromptableSamBackend):
    """SAM 3 tracker only: points, boxes, masks, segment-everything and video tracking."""

    name = "sam3_tracker"
    checkpoint_classes = {
        "sam3_video": "Sam3TrackerVideoModel",
        "sam3_tracker_video": "Sam3TrackerVideoModel",
        "sam3_tracker": "Sam3TrackerModel",
    }
    default_spec = SAM3_IMAGE_SPEC

    def _text_refusal(self) -> str:
        return (
            "backend 'sam3_tracker' takes points, boxes and masks only; use backend sam3 (node: "
            "backend:=sam3, command line: --backend sam3; same checkpoint, facebook/sam3) to segment "
            "text concepts"
        )


class Sam3Backend(PromptableSamBackend):
    """SAM 3 with text concepts and the tracker on one shared image embedding."""

    name = "sam3"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.TEXT, Capability.POINTS, Capability.BOXES, Capability.MASKS, Capability.EVERYTHING,
         Capability.VIDEO}
    )
    checkpoint_classes = {"sam3_video": "Sam3VideoModel"}
    default_spec = SAM3_IMAGE_SPEC

    def __init__(self, model: Any, spec: ImageSpec, config: BackendConfig, *, tokenizer: Any,
                 nms_iou: float = 0.5) -> None:
        super().__init__(model, spec, config, tracker_model=model.tracker_model)
        self.detector = model.detector_model
        self.tokenizer = tokenizer
        self.nms_iou = nms_iou
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @classmethod
    def _build(cls, model: Any, path: Path, config: BackendConfig) -> Sam3Backend:
        maybe_compile(model.detector_model.vision_encoder, config.compile)
        size = int(model.tracker_model.prompt_encoder.input_image_size)
        spec = load_image_spec(path, cls.default_spec, size)
        return cls(model, spec, config, tokenizer=load_tokenizer(path))

    def check_prompts(self, prompts: PromptSet, height: int, width: int) -> PromptSet:
        """Base checks, plus: box exemplars need torchvision (SAM 3 pools them with roi_align)."""
        prompts = super().check_prompts(prompts, height, width)
        if any(c.exemplars for c in prompts.concepts) and not _has_torchvision():
            raise PromptError(
                "SAM 3 box exemplars need torchvision (transformers pools exemplar boxes with "
                "torchvision.ops.roi_align); install torchvision matching your torch, or send the "
                "concept without boxes"
            )
        return prompts

    # ---- frames ----------------------------------------------------------------------------
    def encode(self, image: np.ndarray) -> Sam3Frame:
        """One backbone pass; detector neck for concepts, tracker neck for the tracker."""
        pixel_values, geometry = self.transform(image)
        vision = self.detector.get_vision_features(pixel_values=pixel_values)
        feats, pos = self.model.get_vision_features_for_tracker(vision)
        return Sam3Frame(list(feats), list(pos), geometry, vision)

    def encode_many(self, images: Sequence[np.ndarray]) -> list[Sam3Frame]:  # type: ignore[override]
        """One backbone call for several frames (cameras); each result equals ``encode``.

        The batched vision output is split into per-frame views (no copies): batch item ``i`` of
        every detector level and of every tracker level.
        """
        if len(images) == 1:
            return [self.encode(images[0])]
        pixel_values, geometries = zip(*(self.transform(image) for image in images))
        vision = self.detector.get_vision_features(pixel_values=torch.cat(pixel_values, 0))
        feats, pos = self.model.get_vision_features_for_tracker(vision)
        frames = []
        for i, geometry in enumerate(geometries):
            item = type(vision)(
                last_hidden_state=vision.last_hidden_state[i:i + 1],
                fpn_hidden_states=tuple(h[i:i + 1] for h in vision.fpn_hidden_states),
                fpn_position_encoding=tuple(p[i:i + 1] for p in vision.fpn_position_encoding),
            )
            frames.append(Sam3Frame([f[:, i:i + 1] for f in feats], [_batch_item(p, i) for p in pos],
                                    geometry, item))
        return frames

    def _detections(self, features: FrameFeatures, prompts: PromptSet) -> list[Instance]:
        out = super()._detections(features, prompts)
        if prompts.concepts:
            assert isinstance(features, Sam3Frame)
            out += self._concepts(features, prompts.concepts)
        return out

    def _concepts(self, frame: Sam3Frame, concepts: tuple[ConceptPrompt, ...]) -> list[Instance]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        count = len(concepts)
        text, text_mask = self._text_embeddings([c.text for c in concepts])
        vision = frame.vision
        expanded = type(vision)(
            last_hidden_state=vision.last_hidden_state.expand(count, -1, -1),
            fpn_hidden_states=tuple(h.expand(count, -1, -1, -1) for h in vision.fpn_hidden_states),
            fpn_position_encoding=tuple(p.expand(count, -1, -1, -1) for p in vision.fpn_position_encoding),
        )
        boxes, labels = self._exemplars(frame.geometry, concepts)
        out = self.detector(vision_embeds=expanded, text_embeds=BaseModelOutputWithPooling(pooler_output=text),
                            attention_mask=text_mask, input_boxes=boxes, input_boxes_labels=labels)
        scores = torch.sigmoid(out.pred_logits.float()) * torch.sigmoid(out.presence_logits.float())
        masks = out.pred_masks  # (C, Q, h, w) logits
        keep = scores > self.config.score_threshold
        for index in range(count):  # duplicate removal within each concept, on the device
            keep[index] &= mask_nms(masks[index] > self.config.mask_threshold, scores[index], self.nms_iou)
        flat_scores = torch.where(keep, scores, torch.full_like(scores, -1.0)).flatten()
        top = torch.argsort(flat_scores, descending=True)[: self.config.max_objects]
        chosen = top[flat_scores[top] > 0]  # one host sync: the number of detections
        concept_index = (chosen // scores.shape[1]).cpu().tolist()
        chosen_masks = masks.flatten(0, 1)[chosen]
        return to_instances(chosen_masks, flat_scores[chosen], frame.geometry, [0] * len(concept_index),
                            [concepts[i].text for i in concept_index], self.config.mask_threshold,
                            probabilities=True)

    def _text_embeddings(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, 32, D) projected text features and (C, 32) masks, cached per text."""
        missing = [t for t in texts if t not in self._text_cache]
        if missing:
            tokens = self.tokenizer(missing, padding="max_length", max_length=_TEXT_LENGTH, truncation=True,
                                    return_tensors="pt")
            ids = tokens["input_ids"].to(self.head.device)
            mask = tokens["attention_mask"].to(self.head.device)
            features = self.detector.get_text_features(input_ids=ids, attention_mask=mask,
                                                       return_dict=True).pooler_output
            for k, text in enumerate(missing):
                self._text_cache[text] = (features[k:k + 1], mask[k:k + 1])
        for text in texts:
            self._text_cache.move_to_end(text)
        while len(self._text_cache) > max(_TEXT_CACHE, len(texts)):
            self._text_cache.popitem(last=False)
        text = torch.cat([self._text_cache[t][0] for t in texts])
        mask = torch.cat([self._text_cache[t][1] for t in texts])
        return text, mask

    def _exemplars(self, geometry: FrameGeometry,
                   concepts: tuple[ConceptPrompt, ...]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Box exemplars as normalised (cx, cy, w, h) with labels 1 / 0; padding label -10."""
        most = max(len(c.exemplars) for c in concepts)
        if most == 0:
            return None, None
        boxes = np.zeros((len(concepts), most, 4), dtype=np.float32)
        labels = np.full((len(concepts), most), _PAD_LABEL, dtype=np.int64)
        for index, concept in enumerate(concepts):
            if concept.exemplars:
                boxes[index, : len(concept.exemplars)] = geometry.boxes_to_cxcywh(concept.exemplars)
                labels[index, : len(concept.exemplars)] = [1 if b.positive else 0 for b in concept.exemplars]
        device = self.head.device
        return (torch.from_numpy(boxes).to(device).to(self.head.dtype), torch.from_numpy(labels).to(device))


def _has_torchvision() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())
