"""SAM 2 / SAM 2.1 backend (transformers ``Sam2VideoModel`` or ``Sam2Model``): points, boxes, masks.

:class:`PromptableSamBackend` holds everything the SAM 2 family shares (SAM 3's tracker is the
same architecture): one loaded model behind a lock, torch pre-processing on the model's device,
one image embedding per frame shared by every object, objects decoded as a batch, and live
streams with a bounded memory bank (:mod:`samfusion.segmentation.sam_stream`). A ``sam2_video``
checkpoint (the hub's SAM 2.1 checkpoints) gives streams with memory; an image-only ``sam2``
checkpoint gives streams that re-prompt every frame. Text concepts are refused with a message
naming the SAM 3 backend. "Segment everything" runs a point grid through the decoder in
batches, filters by predicted IoU and stability, and removes duplicates by mask NMS.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from samfusion.segmentation.base import (
    BackendStream,
    Capability,
    Instance,
    ReplayStream,
    SegmentationBackend,
    check_image,
)
from samfusion.segmentation.checkpoints import (
    SAM2_IMAGE_SPEC,
    load_image_spec,
    load_model,
    maybe_compile,
    resolve_checkpoint,
)
from samfusion.segmentation.config import BackendConfig
from samfusion.segmentation.preprocess import ImageSpec, ImageTransform
from samfusion.segmentation.prompts import PromptSet
from samfusion.segmentation.sam_head import EverythingParams, FrameFeatures, SamHead, to_instances
from samfusion.segmentation.sam_stream import VideoTracker

__all__ = ["PromptableSamBackend", "SamVideoStream", "Sam2Backend", "EVERYTHING_LABEL"]

EVERYTHING_LABEL = ""  # label of segment-everything detections (no class)

_PROMPT_CAPS = frozenset({Capability.POINTS, Capability.BOXES, Capability.MASKS, Capability.EVERYTHING})


class PromptableSamBackend(SegmentationBackend):
    """Shared implementation of the SAM 2-family backends (see module docstring)."""

    name: ClassVar[str] = "sam-prompt"
    capabilities: ClassVar[frozenset[Capability]] = _PROMPT_CAPS | {Capability.VIDEO}
    checkpoint_classes: ClassVar[Mapping[str, str]] = {}
    default_spec: ClassVar[ImageSpec] = SAM2_IMAGE_SPEC

    def __init__(self, model: Any, spec: ImageSpec, config: BackendConfig, *,
                 tracker_model: Any | None = None, everything: EverythingParams | None = None) -> None:
        self.model = model
        self.config = config
        self.head = SamHead(tracker_model if tracker_model is not None else model)
        self.transform = ImageTransform(spec, self.head.device, self.head.dtype)
        self.everything_params = everything or EverythingParams()
        self.video = hasattr(self.head.model, "memory_attention")
        if not self.video:  # instance attribute narrows the class-level capabilities
            self.capabilities = type(self).capabilities - {Capability.VIDEO}  # type: ignore[misc]
        self.lock = threading.RLock()

    @classmethod
    def from_config(cls, config: BackendConfig) -> PromptableSamBackend:
        path = resolve_checkpoint(config)
        model = load_model(path, _resolve_classes(cls.checkpoint_classes), config)
        return cls._build(model, path, config)

    @classmethod
    def _build(cls, model: Any, path: Path, config: BackendConfig) -> PromptableSamBackend:
        maybe_compile(model.vision_encoder, config.compile)
        size = int(model.prompt_encoder.input_image_size)
        return cls(model, load_image_spec(path, cls.default_spec, size), config)

    # ---- frames ----------------------------------------------------------------------------
    def encode(self, image: np.ndarray) -> FrameFeatures:
        """Pre-process on the device and run the vision encoder once for this frame."""
        pixel_values, geometry = self.transform(image)
        return self.head.features(pixel_values, geometry)

    def encode_many(self, images: Sequence[np.ndarray]) -> list[FrameFeatures]:
        """One vision-encoder call for several frames (cameras); each result equals ``encode``.

        The caller holds ``self.lock`` and ``torch.inference_mode``.
        """
        if len(images) == 1:
            return [self.encode(images[0])]
        pixel_values, geometries = zip(*(self.transform(image) for image in images))
        out = self.model.get_image_features(torch.cat(pixel_values, 0), return_dict=True)
        feats, pos = list(out.fpn_hidden_states), list(out.fpn_position_encoding)
        return [FrameFeatures([f[:, i:i + 1] for f in feats], [_batch_item(p, i) for p in pos], geometry)
                for i, geometry in enumerate(geometries)]

    def segment(self, image: np.ndarray, prompts: PromptSet) -> list[Instance]:
        height, width = check_image(image)
        prompts = self.check_prompts(prompts, height, width)
        objects = [o for o in prompts.objects if not o.is_empty()]
        if not objects and not prompts.everything and not prompts.concepts:
            return []
        with self.lock, torch.inference_mode():
            features = self.encode(image)
            out: list[Instance] = []
            if objects:
                decoded = self.head.decode_objects(features, objects)
                out += to_instances(decoded.low_res, decoded.scores, features.geometry,
                                    [o.object_id for o in objects], [o.label for o in objects],
                                    self.config.mask_threshold)
            out += self._detections(features, prompts)
            return out

    def _detections(self, features: FrameFeatures, prompts: PromptSet) -> list[Instance]:
        """Detections with instance id 0 (segment everything here; concepts in SAM 3)."""
        if not prompts.everything:
            return []
        masks, scores = self.head.everything(features, self.everything_params, self.config.max_objects)
        count = masks.shape[0]
        return to_instances(masks, scores, features.geometry, [0] * count, [EVERYTHING_LABEL] * count,
                            self.config.mask_threshold)

    def create_stream(self) -> BackendStream:
        return SamVideoStream(self) if self.video else ReplayStream(self)


class SamVideoStream(BackendStream):
    """One camera's tracking state over a shared backend: only memory banks live here."""

    accepts_features = True

    def __init__(self, backend: PromptableSamBackend) -> None:
        self.backend = backend
        self.tracker = VideoTracker(backend.head)

    def step(self, image: np.ndarray, prompts: PromptSet, changed: frozenset[int],
             features: object | None = None) -> list[Instance]:
        backend = self.backend
        height, width = check_image(image)
        prompts = backend.check_prompts(prompts, height, width)
        objects = [o for o in prompts.objects if not o.is_empty()]
        if not objects:
            self.tracker.reset()  # every object is gone: drop their memory
        if not objects and not prompts.everything and not prompts.concepts:
            return []
        with backend.lock, torch.inference_mode():
            if features is None:
                features = backend.encode(image)
            assert isinstance(features, FrameFeatures)
            out: list[Instance] = []
            if objects:
                result = self.tracker.track(features, objects, changed)
                labels = {o.object_id: o.label for o in objects}
                out += to_instances(result.low_res, result.scores, features.geometry, result.ids,
                                    [labels[i] for i in result.ids], backend.config.mask_threshold)
            out += backend._detections(features, prompts)
            return out

    def remove(self, object_id: int) -> None:
        self.tracker.remove(object_id)

    def reset(self) -> None:
        self.tracker.reset()


def _batch_item(tensor: torch.Tensor, index: int) -> torch.Tensor:
    """Item ``index`` of a (H*W, B, C) level; a level shared by the batch (B == 1) as is."""
    return tensor if tensor.shape[1] == 1 else tensor[:, index:index + 1]


def _resolve_classes(names: Mapping[str, str]) -> dict[str, type]:
    import transformers

    return {model_type: getattr(transformers, cls_name) for model_type, cls_name in names.items()}


class Sam2Backend(PromptableSamBackend):
    """SAM 2 / 2.1 (facebook/sam2.1-hiera-tiny, -small, -base-plus, -large)."""

    name = "sam2"
    checkpoint_classes = {"sam2_video": "Sam2VideoModel", "sam2": "Sam2Model"}
    default_spec = SAM2_IMAGE_SPEC
