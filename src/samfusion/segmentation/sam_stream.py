"""Bounded, batched SAM 2-style video tracking for endless live streams.

Why not ``Sam2VideoInferenceSession``: the transformers session keeps every processed frame and
every frame's outputs (memory grows with the stream) and runs objects one by one through the
memory attention and decoder. This module keeps the same model and the same memory semantics
but (a) holds a fixed-size memory bank per object and (b) runs all objects of a frame as one
batch.

Per object the bank holds at most ``max_cond`` conditioning memories (frames where the object
was prompted; the most recent ones), ``num_maskmem - 1`` recent tracked memories and
``max_object_pointers_in_encoder - 1`` recent object pointers, as the model's config says.
The spatial position encoding of the memories depends only on the feature size, so it is
stored once per stream. On a prompted frame an object is decoded from its prompts with no
memory (an initial conditioning frame); on every other frame its features are conditioned on
its memory bank. Objects whose banks have the same layout go through memory attention, the
decoder and the memory encoder together. Lost objects keep their bank, so they are
re-acquired when the model sees them again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from samfusion.segmentation.preprocess import masks_to_model
from samfusion.segmentation.prompts import ObjectPrompt
from samfusion.segmentation.sam_head import Decoded, FrameFeatures, SamHead

__all__ = ["ObjectMemory", "VideoTracker", "TrackResult"]

_MASK_OUT_SCALE, _MASK_OUT_BIAS = 20.0, -10.0  # mask prompts used as output logits (SAM 2)


@dataclass
class ObjectMemory:
    """Memory bank of one object: bounded deques of (frame, tensor)."""

    cond: deque = field(default_factory=deque)  # (frame, features (HW, 1, Cm), pointer (1, C))
    recent: deque = field(default_factory=deque)  # (frame, features)
    pointers: deque = field(default_factory=deque)  # (frame, pointer)

    def tensor_count(self) -> int:
        return 2 * len(self.cond) + len(self.recent) + len(self.pointers)


@dataclass
class TrackResult:
    """One frame of tracking, on the device: ids in the order of the tensors."""

    ids: list[int]
    low_res: torch.Tensor  # (N, h, w)
    scores: torch.Tensor  # (N,)


class VideoTracker:
    """Per-stream memory of a SAM 2-family video model (Sam2VideoModel, Sam3TrackerVideoModel)."""

    def __init__(self, head: SamHead, max_cond: int = 4) -> None:
        self.head = head
        model = head.model
        self.model = model
        config = model.config
        self.num_maskmem = int(config.num_maskmem)
        self.max_pointers = int(config.max_object_pointers_in_encoder)
        configured = int(getattr(config, "max_cond_frame_num", -1))
        self.max_cond = configured if configured > 0 else max_cond
        self.temporal_pointer_pe = bool(config.enable_temporal_pos_encoding_for_object_pointers)
        self.track_multimask = bool(config.multimask_output_in_sam and config.multimask_output_for_tracking)
        self.hidden = int(model.hidden_dim)
        self.mem_dim = int(model.mem_dim)
        self._banks: dict[int, ObjectMemory] = {}
        self._mem_pos: torch.Tensor | None = None
        self._frame = 0

    # ---- state -----------------------------------------------------------------------------
    def _new_bank(self) -> ObjectMemory:
        return ObjectMemory(cond=deque(maxlen=self.max_cond), recent=deque(maxlen=max(1, self.num_maskmem - 1)),
                            pointers=deque(maxlen=max(1, self.max_pointers - 1)))

    def remove(self, object_id: int) -> None:
        self._banks.pop(object_id, None)

    def reset(self) -> None:
        self._banks.clear()
        self._mem_pos = None
        self._frame = 0

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._banks)

    def state_tensor_count(self) -> int:
        """Tensors held by the memory banks (bounded by :meth:`state_bound`)."""
        return sum(bank.tensor_count() for bank in self._banks.values()) + int(self._mem_pos is not None)

    def state_bound(self, objects: int) -> int:
        per_object = 2 * self.max_cond + max(1, self.num_maskmem - 1) + max(1, self.max_pointers - 1)
        return objects * per_object + 1

    # ---- one frame -------------------------------------------------------------------------
    def track(self, features: FrameFeatures, objects: Sequence[ObjectPrompt],
              changed: frozenset[int]) -> TrackResult:
        """Segment every object on this frame and update the memory banks."""
        frame = self._frame
        self._frame += 1
        active = {o.object_id for o in objects}
        for stale in set(self._banks) - active:
            del self._banks[stale]
        prompted = [o for o in objects if (o.object_id in changed or o.object_id not in self._banks)
                    and not o.is_empty()]
        prompted_ids = {o.object_id for o in prompted}
        tracked = [o.object_id for o in objects if o.object_id not in prompted_ids and o.object_id in self._banks]
        parts: list[tuple[list[int], Decoded, bool]] = []
        as_mask = [o for o in prompted if o.mask is not None and not o.points and not o.boxes]
        by_prompt = [o for o in prompted if o not in as_mask]
        if by_prompt:
            parts.append(([o.object_id for o in by_prompt], self.head.decode_objects(features, by_prompt), True))
        if as_mask:
            parts.append(([o.object_id for o in as_mask], self._mask_as_output(features, as_mask), True))
        for group in self._layout_groups(tracked, frame):
            parts.append((group, self._track_group(features, group, frame), False))
        for ids, decoded, is_prompt in parts:
            self._remember(features, ids, decoded, is_prompt, frame)
        order = [o.object_id for o in objects if o.object_id in prompted_ids or o.object_id in tracked]
        if not parts:
            empty = torch.zeros(0, *self.head.mask_input_size, device=self.head.device)
            return TrackResult([], empty, empty.new_zeros(0))
        ids = [i for ids, _, _ in parts for i in ids]
        position = {object_id: k for k, object_id in enumerate(ids)}
        index = torch.tensor([position[i] for i in order], device=self.head.device)
        low_res = torch.cat([d.low_res.float() for _, d, _ in parts])[index]
        scores = torch.cat([d.scores for _, d, _ in parts])[index]
        return TrackResult(order, low_res, scores)

    def _layout_groups(self, ids: list[int], frame: int) -> list[list[int]]:
        groups: dict[tuple[int, int, int], list[int]] = {}
        for object_id in ids:
            bank = self._banks[object_id]
            key = (len(bank.cond), len(self._recent(bank, frame)), len(self._pointers(bank, frame)))
            groups.setdefault(key, []).append(object_id)
        return list(groups.values())

    def _recent(self, bank: ObjectMemory, frame: int) -> list[tuple[int, torch.Tensor]]:
        """Tracked memories of the last num_maskmem - 1 frames, oldest first."""
        return [(f, m) for f, m in bank.recent if frame - f < self.num_maskmem]

    def _pointers(self, bank: ObjectMemory, frame: int) -> list[tuple[int, torch.Tensor]]:
        """Conditioning pointers, then tracked pointers of the last max_pointers - 1 frames."""
        cond = [(frame - f, p) for f, _, p in bank.cond]
        recent = sorted(((frame - f, p) for f, p in bank.pointers if frame - f < self.max_pointers),
                        key=lambda item: item[0])
        return cond + recent

    def _track_group(self, features: FrameFeatures, ids: list[int], frame: int) -> Decoded:
        """Memory attention + decoder for objects whose banks share one layout."""
        model = self.model
        count = len(ids)
        banks = [self._banks[i] for i in ids]
        temporal = model.memory_temporal_positional_encoding  # (num_maskmem, 1, 1, Cm)
        memories, positions = [], []
        for bank in banks:
            mem = [m for _, m, _ in bank.cond] + [m for _, m in self._recent(bank, frame)]
            pos = [self._mem_pos + temporal[-1] for _ in bank.cond]  # conditioning: offset 0
            pos += [self._mem_pos + temporal[frame - f - 1] for f, _ in self._recent(bank, frame)]
            memories.append(torch.cat(mem, dim=0))
            positions.append(torch.cat(pos, dim=0))
        memory = torch.cat(memories, dim=1)
        memory_pos = torch.cat(positions, dim=1)
        pointers, pointer_pos = self._pointer_tokens(banks, frame)
        memory = torch.cat([memory, pointers], dim=0).to(self.head.dtype)
        memory_pos = torch.cat([memory_pos, pointer_pos], dim=0).to(self.head.dtype)
        top, top_pos = features.feats[-1], features.pos[-1]
        conditioned = model.memory_attention(
            current_vision_features=top.expand(-1, count, -1),
            current_vision_position_embeddings=top_pos.expand(-1, count, -1),
            memory=memory,
            memory_posision_embeddings=memory_pos,
            num_object_pointer_tokens=pointers.shape[0],
        )
        # (1, N, HW, C) or (N, 1, HW, C) -> (N, C, h, w)
        conditioned = conditioned.reshape(count, -1, self.hidden).transpose(1, 2)
        pix = conditioned.reshape(count, self.hidden, *self.head.sizes[-1])
        embeddings = self.head.image_embeddings(features, top=pix)
        return self.head.decode(embeddings, None, None, None, self.track_multimask)

    def _pointer_tokens(self, banks: list[ObjectMemory], frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_object = [self._pointers(bank, frame) for bank in banks]
        pointers = torch.stack([torch.cat([p for _, p in items], dim=0) for items in per_object], dim=1)
        offsets = torch.tensor([[o for o, _ in items] for items in per_object], dtype=torch.float32,
                               device=pointers.device).T  # (P, N)
        if self.temporal_pointer_pe:
            scaled = offsets / float(max(1, self.max_pointers - 1))
            sine = _sine_pe(scaled, self.hidden).to(pointers.dtype)
            pos = self.model.temporal_positional_encoding_projection_layer(sine)
        else:
            pos = pointers.new_zeros(*offsets.shape, self.mem_dim)
        if self.mem_dim < self.hidden:  # split each pointer into hidden / mem_dim tokens
            splits = self.hidden // self.mem_dim
            pointers = pointers.reshape(-1, len(banks), splits, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pos = pos.repeat_interleave(splits, dim=0)
        return pointers, pos

    def _mask_as_output(self, features: FrameFeatures, objects: Sequence[ObjectPrompt]) -> Decoded:
        """Mask prompts are taken as the output itself (SAM 2 video semantics)."""
        head = self.head
        size = (head.input_size, head.input_size)
        masks = masks_to_model([o.mask for o in objects], size, head.device, head.dtype)
        high_res = masks.float() * _MASK_OUT_SCALE + _MASK_OUT_BIAS
        low_res = F.interpolate(high_res, size=head.mask_input_size, mode="bilinear", align_corners=False,
                                antialias=True)
        flat_top = features.feats[-1]
        raw_top = flat_top.permute(1, 2, 0).reshape(1, -1, *head.sizes[-1])
        embeddings = head.image_embeddings(features, top=raw_top)
        decoded = head.decode(embeddings, None, None, self.model.mask_downsample(masks), True)
        appearing = masks.flatten(1).amax(dim=1) > 0
        logits = torch.where(appearing, _MASK_OUT_SCALE + _MASK_OUT_BIAS, _MASK_OUT_BIAS)
        # the pointer is gated by the decoder's own presence logit, then by the mask's (as in SAM 2)
        pointer = self._gate(self.model.object_pointer_proj(decoded.tokens), decoded.object_logits)
        pointer = self._gate(pointer, logits)
        return Decoded(low_res[:, 0], torch.ones_like(logits), logits.to(decoded.object_logits.dtype),
                       decoded.tokens, pointer)

    def _gate(self, pointer: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
        appearing = (object_logits > 0).to(pointer.dtype)[:, None]
        return appearing * pointer + (1 - appearing) * self.model.no_object_pointer

    def _remember(self, features: FrameFeatures, ids: list[int], decoded: Decoded, is_prompt: bool,
                  frame: int) -> None:
        """Encode this frame's masks into memory for every object of the part (one batch)."""
        model = self.model
        count = len(ids)
        high_res = F.interpolate(decoded.low_res.float().unsqueeze(1), size=(self.head.input_size,) * 2,
                                 mode="bilinear", align_corners=False).to(self.head.dtype)
        logits = decoded.object_logits.reshape(count, 1, 1)
        features_mem, pos_mem = model._encode_new_memory(
            current_vision_feats=features.feats[-1].expand(-1, count, -1),
            pred_masks_high_res=high_res,
            object_score_logits=logits,
            is_mask_from_pts=is_prompt,
        )
        pointer = decoded.pointer
        if pointer is None:
            pointer = self._gate(model.object_pointer_proj(decoded.tokens), decoded.object_logits)
        if self._mem_pos is None:
            self._mem_pos = pos_mem[:, :1].detach()
        for k, object_id in enumerate(ids):
            mem = features_mem[:, k:k + 1]
            ptr = pointer[k:k + 1]
            if is_prompt:
                bank = self._banks.get(object_id) or self._new_bank()
                bank.cond.append((frame, mem, ptr))
                self._banks[object_id] = bank
            else:
                bank = self._banks[object_id]
                bank.recent.append((frame, mem))
                bank.pointers.append((frame, ptr))


def _sine_pe(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1D sine / cosine encoding of (any shape) positions -> (..., dim), as SAM 2 uses for pointers."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=positions.device)
    steps = temperature ** (2 * (steps // 2) / half)
    angles = positions.unsqueeze(-1) / steps
    return torch.cat([angles.sin(), angles.cos()], dim=-1)

