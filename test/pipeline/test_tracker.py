"""ObjectTracker: prompt store, stable ids, concept matching, lost objects, bounded state."""

from __future__ import annotations

import numpy as np
import pytest

from samfusion.errors import PromptError
from samfusion.segmentation.base import Capability, Instance, SegmentationBackend
from samfusion.segmentation.config import TrackerConfig
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction, PromptSet, PromptUpdate
from samfusion.segmentation.tracking import IdAllocator, ObjectTracker


class ScriptedBackend(SegmentationBackend):
    """Returns, per frame, masks from a script: object prompts as boxes, concept detections as given."""

    name = "scripted"
    capabilities = frozenset({Capability.POINTS, Capability.BOXES, Capability.TEXT})

    def __init__(self) -> None:
        self.detections: list[tuple[str, tuple[int, int, int, int], float]] = []
        self.object_scores: dict[int, float] = {}

    def segment(self, image, prompts: PromptSet):
        h, w = image.shape[:2]
        out = []
        for obj in prompts.objects:
            mask = np.zeros((h, w), bool)
            b = obj.boxes[0] if obj.boxes else BoxPrompt(obj.points[0].x - 2, obj.points[0].y - 2,
                                                         obj.points[0].x + 2, obj.points[0].y + 2)
            mask[int(b.y_min):int(b.y_max), int(b.x_min):int(b.x_max)] = True
            out.append(Instance(obj.object_id, obj.label, self.object_scores.get(obj.object_id, 0.9), mask))
        for label, (x0, y0, x1, y1), score in self.detections:
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = True
            out.append(Instance(0, label, score, mask))
        return out


IMAGE = np.zeros((100, 200, 3), np.uint8)


def add_box(tracker, object_id=0, box=(10, 10, 30, 30), label="thing"):
    return tracker.apply(PromptUpdate(PromptAction.ADD, object_id=object_id, label=label,
                                      boxes=(BoxPrompt(*box),)), (200, 100))


def test_ids_are_kept_and_fresh_ids_skip_used_ones():
    tracker = ObjectTracker(ScriptedBackend())
    assert add_box(tracker, 2) == [2]
    assert add_box(tracker) == [1]
    assert add_box(tracker) == [3]
    step = tracker.step(IMAGE)
    assert [i.instance_id for i in step.instances] == [1, 2, 3]
    with pytest.raises(PromptError, match="object id 2 already exists; use REFINE"):
        add_box(tracker, 2)


def test_refine_remove_and_unknown_ids():
    tracker = ObjectTracker(ScriptedBackend())
    add_box(tracker, 5)
    tracker.apply(PromptUpdate(PromptAction.REFINE, object_id=5, boxes=(BoxPrompt(50, 50, 60, 70),)))
    (inst,) = tracker.step(IMAGE).instances
    assert inst.box == (50, 50, 60, 70)
    with pytest.raises(PromptError, match="REFINE for unknown object id 9; known ids: \\[5\\]"):
        tracker.apply(PromptUpdate(PromptAction.REFINE, object_id=9, points=(PointPrompt(1, 1),)))
    with pytest.raises(PromptError, match="REMOVE for unknown object id 9"):
        tracker.apply(PromptUpdate(PromptAction.REMOVE, object_id=9))
    assert tracker.apply(PromptUpdate(PromptAction.REMOVE, object_id=5)) == [5]
    assert tracker.step(IMAGE).instances == []


def test_prompt_outside_the_image_is_refused_on_arrival_and_skipped_if_stored():
    tracker = ObjectTracker(ScriptedBackend())
    with pytest.raises(PromptError, match="outside the 200x100 image"):
        tracker.apply(PromptUpdate(PromptAction.ADD, points=(PointPrompt(250, 10),)), (200, 100))
    tracker.apply(PromptUpdate(PromptAction.ADD, object_id=3, points=(PointPrompt(250, 10),)))  # size unknown
    add_box(tracker, 4)
    step = tracker.step(IMAGE)
    assert [i.instance_id for i in step.instances] == [4]
    assert len(step.rejected) == 1 and step.rejected[0].startswith("skipped on this 200x100 frame: object 3")
    assert tracker.object_ids == [3, 4]  # kept: a later, larger frame can still serve it
    wide = np.zeros((100, 300, 3), np.uint8)
    assert [i.instance_id for i in tracker.step(wide).instances] == [3, 4]


def test_refine_adds_clicks_keeps_box_and_label():
    tracker = ObjectTracker(ScriptedBackend())
    add_box(tracker, 5, box=(10, 10, 30, 30), label="car")
    tracker.apply(PromptUpdate(PromptAction.REFINE, object_id=5, points=(PointPrompt(12, 12, False),)))
    (obj,) = tracker.prompt_set().objects
    assert obj.label == "car" and obj.boxes == (BoxPrompt(10, 10, 30, 30),)
    assert obj.points == (PointPrompt(12, 12, False),)
    tracker.apply(PromptUpdate(PromptAction.REFINE, object_id=5, points=(PointPrompt(20, 20),)))
    assert len(tracker.prompt_set().objects[0].points) == 2


def test_lost_objects_are_reported_after_lost_after_frames_and_reacquired():
    backend = ScriptedBackend()
    tracker = ObjectTracker(backend, TrackerConfig(lost_after=2))
    add_box(tracker, 1)
    backend.object_scores[1] = 0.1
    assert tracker.step(IMAGE).lost_ids == []  # one frame below threshold: not yet lost
    step = tracker.step(IMAGE)
    assert step.lost_ids == [1] and step.frames_lost[1] == 2 and step.instances == []
    backend.object_scores[1] = 0.8
    step = tracker.step(IMAGE)
    assert step.lost_ids == [] and [i.instance_id for i in step.instances] == [1]


def test_concept_detections_keep_ids_by_iou_and_new_ones_get_fresh_ids():
    backend = ScriptedBackend()
    tracker = ObjectTracker(backend, TrackerConfig(forget_after=2))
    tracker.apply(PromptUpdate(PromptAction.ADD, concepts=("car",)))
    backend.detections = [("car", (10, 10, 40, 40), 0.9), ("car", (100, 10, 140, 40), 0.8)]
    first = {i.box[0]: i.instance_id for i in tracker.step(IMAGE).instances}
    assert sorted(first.values()) == [1, 2]
    backend.detections = [("car", (104, 12, 144, 42), 0.8), ("car", (12, 10, 42, 40), 0.9),
                          ("car", (160, 60, 190, 90), 0.7)]
    second = {i.box[0]: i.instance_id for i in tracker.step(IMAGE).instances}
    assert second[12] == first[10] and second[104] == first[100] and second[160] == 3
    backend.detections = []
    tracker.step(IMAGE)
    tracker.step(IMAGE)  # forget_after=2: the three tracks give up their ids
    backend.detections = [("car", (10, 10, 40, 40), 0.9)]
    (again,) = tracker.step(IMAGE).instances
    assert again.instance_id == 4  # a new track, ids are not recycled at once


def test_state_stays_bounded_over_many_frames_of_new_detections():
    backend = ScriptedBackend()
    tracker = ObjectTracker(backend, TrackerConfig(max_objects=8, forget_after=1000))
    tracker.apply(PromptUpdate(PromptAction.ADD, concepts=("blob",)))
    for frame in range(300):
        x = (frame * 7) % 180
        backend.detections = [("blob", (x, 0, x + 5, 5), 0.9), ("blob", (x, 50, x + 5, 55), 0.9)]
        tracker.step(IMAGE)
        assert len(tracker._tracks) <= 8
    assert len(tracker._ids._used) <= 8


def test_ids_are_unique_across_streams_sharing_an_allocator():
    ids = IdAllocator()
    a, b = ObjectTracker(ScriptedBackend(), ids=ids), ObjectTracker(ScriptedBackend(), ids=ids)
    assert add_box(a) == [1] and add_box(b) == [2] and add_box(a) == [3]
    a.apply(PromptUpdate(PromptAction.CLEAR))
    assert add_box(b) == [4]
    assert not ids.in_use(1) and ids.in_use(2)


def test_clear_forgets_everything():
    tracker = ObjectTracker(ScriptedBackend())
    add_box(tracker, 1)
    tracker.apply(PromptUpdate(PromptAction.ADD, concepts=("car",)))
    assert tracker.apply(PromptUpdate(PromptAction.CLEAR)) == [1]
    assert tracker.prompt_set().is_empty()


def test_a_refused_add_does_not_use_up_an_id():
    tracker = ObjectTracker(ScriptedBackend())
    for _ in range(3):
        with pytest.raises(PromptError):
            tracker.apply(PromptUpdate(PromptAction.ADD, points=(PointPrompt(999, 10),)), (200, 100))
    assert add_box(tracker) == [1]
