"""Per-stream object bookkeeping: prompt store, stable ids, concept matching, lost objects.

One :class:`ObjectTracker` per camera (stream). It owns the prompts that prompt messages add,
refine and remove, asks the backend stream to segment each frame, and keeps ids stable:
object prompts keep their ``object_id``; text-concept and segment-everything detections are
matched to the previous frame's detections by mask IoU and keep their id, new ones get fresh
ids. Memory is bounded: prompt store and concept tracks are capped by ``max_objects``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from samfusion.errors import PromptError
from samfusion.segmentation.base import Instance, SegmentationBackend
from samfusion.segmentation.config import TrackerConfig
from samfusion.segmentation.prompts import (
    ConceptPrompt,
    ObjectPrompt,
    PromptAction,
    PromptSet,
    PromptUpdate,
)

__all__ = ["IdAllocator", "ObjectTracker", "TrackStep"]


@dataclass
class TrackStep:
    """Result of one frame: visible instances plus the lost-frame count of every tracked id."""

    instances: list[Instance]
    frames_lost: dict[int, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # prompts dropped as invalid for this image

    @property
    def lost_ids(self) -> list[int]:
        return sorted(i for i, n in self.frames_lost.items() if n > 0)


@dataclass
class _ConceptTrack:
    label: str
    mask: np.ndarray
    unseen: int = 0


class IdAllocator:
    """Instance ids shared by the streams of one pipeline, so ids are unique across cameras.

    Ids live in 1..65535 (the mono16 id image); fresh ids count up and wrap, skipping ids in use.
    """

    MAX_ID = 0xFFFF

    def __init__(self) -> None:
        self._used: dict[int, int] = {}  # id -> number of streams holding it
        self._next = 1

    def in_use(self, object_id: int) -> bool:
        return object_id in self._used

    def fresh(self) -> int:
        if len(self._used) >= self.MAX_ID:
            raise PromptError("all 65535 instance ids are in use")
        while self._next in self._used:
            self._next = self._next % self.MAX_ID + 1
        object_id = self._next
        self._next = self._next % self.MAX_ID + 1
        return object_id

    def hold(self, object_id: int) -> None:
        if not 1 <= object_id <= self.MAX_ID:
            raise PromptError(f"object id {object_id} does not fit the mono16 id image (1..65535)")
        self._used[object_id] = self._used.get(object_id, 0) + 1

    def release(self, object_id: int) -> None:
        count = self._used.get(object_id, 0) - 1
        if count > 0:
            self._used[object_id] = count
        else:
            self._used.pop(object_id, None)


class ObjectTracker:
    """Prompt store and id keeping for one stream (see module docstring)."""

    def __init__(self, backend: SegmentationBackend, config: TrackerConfig | None = None,
                 ids: IdAllocator | None = None) -> None:
        self.config = (config or TrackerConfig()).validate()
        self.backend = backend
        self._stream = backend.create_stream()
        self._objects: dict[int, ObjectPrompt] = {}
        self._concepts: dict[str, ConceptPrompt] = {}
        self._everything = False
        self._changed: set[int] = set()
        self._tracks: dict[int, _ConceptTrack] = {}
        self._frames_lost: dict[int, int] = {}
        self._ids = ids or IdAllocator()

    # ---- prompts -------------------------------------------------------------------------
    @property
    def object_ids(self) -> list[int]:
        return sorted(self._objects)

    @property
    def concepts(self) -> list[str]:
        return sorted(self._concepts)

    def apply(self, update: PromptUpdate, image_size: tuple[int, int] | None = None) -> list[int]:
        """Apply one prompt update; returns the object ids it touched.

        ``image_size`` (width, height), when known, validates coordinates now so a bad prompt is
        refused when it arrives rather than on every frame. Raises PromptError.
        """
        action = PromptAction(update.action)
        if action is PromptAction.CLEAR:
            touched = sorted(set(self._objects) | set(self._tracks))
            self._clear()
            return touched
        if action is PromptAction.SEGMENT_ALL:
            probe = PromptSet(everything=True)
            if image_size is not None:
                self.backend.check_prompts(probe, image_size[1], image_size[0])
            self._everything = True
            return []
        if action is PromptAction.REMOVE:
            return [self._remove(update.object_id)]
        touched: list[int] = []
        if update.concepts:
            for text in update.concepts:
                concept = ConceptPrompt(text=text.strip(), exemplars=update.boxes)
                if not concept.text:
                    raise PromptError("empty text concept")
                self._check(PromptSet(concepts=(concept,)), image_size)
                self._concepts[concept.text] = concept
            if not update.points:
                return touched
        if not update.points and not update.boxes:
            raise PromptError(
                f"{action.name} prompt for object {update.object_id} has no points, boxes or concepts"
            )
        if action is PromptAction.REFINE and update.object_id not in self._objects:
            raise PromptError(
                f"REFINE for unknown object id {update.object_id}; known ids: {self.object_ids}"
            )
        points, boxes, label = update.points, update.boxes, update.label
        if action is PromptAction.REFINE:  # interactive refinement: clicks add up, a new box replaces
            old = self._objects[update.object_id]
            points, boxes, label = old.points + points, boxes or old.boxes, label or old.label
        # Validate before taking an id, so a refused ADD does not use one up.
        obj = ObjectPrompt(object_id=update.object_id, label=label, points=points, boxes=boxes)
        obj = self._check(PromptSet(objects=(obj,)), image_size).objects[0]
        object_id = update.object_id if action is PromptAction.REFINE else self._allocate(update.object_id)
        obj = replace(obj, object_id=object_id)
        self._objects[object_id] = obj
        self._frames_lost[object_id] = 0
        self._changed.add(object_id)
        touched.append(object_id)
        return touched

    def _check(self, prompts: PromptSet, image_size: tuple[int, int] | None) -> PromptSet:
        if image_size is None:
            return prompts
        return self.backend.check_prompts(prompts, image_size[1], image_size[0])

    def _allocate(self, requested: int) -> int:
        if requested in self._objects or requested in self._tracks:
            raise PromptError(f"object id {requested} already exists; use REFINE to change it")
        if len(self._objects) + len(self._tracks) >= self.config.max_objects:
            raise PromptError(f"stream already tracks max_objects={self.config.max_objects}")
        object_id = requested or self._ids.fresh()
        self._ids.hold(object_id)
        return object_id

    def _fresh_track_id(self) -> int:
        object_id = self._ids.fresh()
        self._ids.hold(object_id)
        return object_id

    def _remove(self, object_id: int) -> int:
        if object_id in self._objects:
            del self._objects[object_id]
        elif object_id in self._tracks:
            del self._tracks[object_id]
        else:
            known = sorted(set(self._objects) | set(self._tracks))
            raise PromptError(f"REMOVE for unknown object id {object_id}; known ids: {known}")
        self._ids.release(object_id)
        self._frames_lost.pop(object_id, None)
        self._changed.discard(object_id)
        self._stream.remove(object_id)
        return object_id

    def _clear(self) -> None:
        for object_id in list(self._objects) + list(self._tracks):
            self._ids.release(object_id)
        self._objects.clear()
        self._concepts.clear()
        self._tracks.clear()
        self._frames_lost.clear()
        self._changed.clear()
        self._everything = False
        self._stream.reset()

    # ---- frames --------------------------------------------------------------------------
    def prompt_set(self) -> PromptSet:
        return PromptSet(
            objects=tuple(self._objects[i] for i in sorted(self._objects)),
            concepts=tuple(self._concepts[c] for c in sorted(self._concepts)),
            everything=self._everything,
        )

    def _fitting_prompts(self, height: int, width: int) -> tuple[PromptSet, list[str]]:
        """This frame's prompt set without the object prompts that do not fit its size.

        They stay stored (the next frame may have the expected size again) and are reported.
        """
        prompts = self.prompt_set()
        kept, rejected = [], []
        for obj in prompts.objects:
            try:
                self.backend.check_prompts(PromptSet(objects=(obj,)), height, width)
                kept.append(obj)
            except PromptError as exc:
                rejected.append(f"skipped on this {width}x{height} frame: {exc}")  # exc names the object
        return replace(prompts, objects=tuple(kept)), rejected

    @property
    def accepts_features(self) -> bool:
        """Whether ``step`` can take encoder features batched over cameras."""
        return bool(getattr(self._stream, "accepts_features", False))

    def step(self, image: np.ndarray, features: object | None = None) -> TrackStep:
        """Segment one frame with every active prompt; ids stay stable across calls.

        Prompts that do not fit this image are skipped for it and reported in
        ``TrackStep.rejected``; they stay stored for the next frames.
        """
        if image.ndim >= 2:
            prompts, rejected = self._fitting_prompts(int(image.shape[0]), int(image.shape[1]))
        else:
            prompts, rejected = self.prompt_set(), []
        if prompts.is_empty():
            return TrackStep(instances=[], frames_lost={}, rejected=rejected)
        changed = frozenset(self._changed)
        raw = self._stream.step(image, prompts, changed, features) if features is not None \
            else self._stream.step(image, prompts, changed)
        self._changed.clear()
        threshold = self.config.score_threshold
        by_id = {inst.instance_id: inst for inst in raw if inst.instance_id in self._objects}
        visible: list[Instance] = []
        for object_id in self._objects:
            inst = by_id.get(object_id)
            if inst is not None and inst.score >= threshold and inst.area > 0:
                self._frames_lost[object_id] = 0
                visible.append(inst)
            else:
                self._frames_lost[object_id] = self._frames_lost.get(object_id, 0) + 1
        detections = [i for i in raw if i.instance_id == 0 and i.score >= threshold and i.area > 0]
        visible.extend(self._match_detections(detections))
        visible.sort(key=lambda i: i.instance_id)
        lost_after = self.config.lost_after
        frames_lost = {i: n for i, n in self._frames_lost.items() if i in self._objects}
        return TrackStep(
            instances=visible,
            frames_lost={i: (n if n >= lost_after else 0) for i, n in frames_lost.items()},
            rejected=rejected,
        )

    def _match_detections(self, detections: list[Instance]) -> list[Instance]:
        """Give concept / everything detections the ids of matching previous detections."""
        detections = sorted(detections, key=lambda i: -i.score)
        cap = max(0, self.config.max_objects - len(self._objects))
        detections = detections[:cap]
        track_ids = list(self._tracks)
        pairs: list[tuple[float, int, int]] = []
        for d_index, det in enumerate(detections):
            for track_id in track_ids:
                track = self._tracks[track_id]
                if track.label != det.label or track.mask.shape != det.mask.shape:
                    continue
                iou = _mask_iou(track.mask, det.mask)
                if iou >= self.config.match_iou:
                    pairs.append((iou, d_index, track_id))
        pairs.sort(reverse=True)
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for _, d_index, track_id in pairs:
            if d_index in assigned or track_id in used_tracks:
                continue
            assigned[d_index] = track_id
            used_tracks.add(track_id)
        out: list[Instance] = []
        for d_index, det in enumerate(detections):
            track_id = assigned.get(d_index)
            if track_id is None:
                track_id = self._fresh_track_id()
                self._tracks[track_id] = _ConceptTrack(label=det.label, mask=det.mask)
            track = self._tracks[track_id]
            track.mask = det.mask
            track.unseen = 0
            used_tracks.add(track_id)
            det.instance_id = track_id
            out.append(det)
        for track_id in list(self._tracks):
            if track_id not in used_tracks:
                self._tracks[track_id].unseen += 1
                if self._tracks[track_id].unseen >= self.config.forget_after:
                    del self._tracks[track_id]
                    self._ids.release(track_id)
        room = max(0, self.config.max_objects - len(self._objects))
        if len(self._tracks) > room:  # keep memory bounded: drop the longest-unseen tracks
            stale = sorted(self._tracks, key=lambda t: -self._tracks[t].unseen)
            for track_id in stale[: len(self._tracks) - room]:
                del self._tracks[track_id]
                self._ids.release(track_id)
        return out


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    if inter == 0:
        return 0.0
    return inter / float(np.count_nonzero(a | b))
