"""The backend contract, checked on every backend: classical (GrabCut) and each SAM backend.

Shapes, ids, labels, prompt coordinates at the image borders for portrait and landscape
images, the error paths, streams and the tracker's id keeping. SAM backends run tiny random
models here, so mask quality is not asserted, only what the interface promises.
"""

from __future__ import annotations

import numpy as np
import pytest

from samfusion.errors import PromptError
from samfusion.segmentation.base import Capability, check_image, instances_to_id_image
from samfusion.segmentation.config import TrackerConfig
from samfusion.segmentation.prompts import (
    BoxPrompt,
    ConceptPrompt,
    ObjectPrompt,
    PointPrompt,
    PromptAction,
    PromptSet,
    PromptUpdate,
)
from samfusion.segmentation.tracking import ObjectTracker

from ._helpers import SAM_KINDS, count_calls, vision_module

ALL_KINDS = ("classical",) + SAM_KINDS


def _objects(width: int, height: int) -> PromptSet:
    """A click, a box, a box with a negative click: ids 3, 7, 9, labels set."""
    return PromptSet(objects=(
        ObjectPrompt(3, "click", points=(PointPrompt(width * 0.5, height * 0.5),)),
        ObjectPrompt(7, "box", boxes=(BoxPrompt(width * 0.1, height * 0.2, width * 0.6, height * 0.9),)),
        ObjectPrompt(9, "box+neg", boxes=(BoxPrompt(width * 0.3, height * 0.1, width * 0.95, height * 0.7),),
                     points=(PointPrompt(width * 0.4, height * 0.3, positive=False),)),
    ))


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("image_name", ["dog", "truck_portrait"])
def test_instances_have_prompt_ids_labels_and_image_shape(kind, image_name, backends, demo_images):
    backend = backends[kind]
    image = demo_images[image_name]
    height, width = check_image(image)
    out = backend.segment(image, _objects(width, height))
    assert [i.instance_id for i in out] == [3, 7, 9]
    assert [i.label for i in out] == ["click", "box", "box+neg"]
    for inst in out:
        assert inst.mask.shape == (height, width)
        assert inst.mask.dtype == np.bool_
        assert 0.0 <= inst.score <= 1.0
    ids = instances_to_id_image(out, height, width)
    assert set(np.unique(ids)) <= {0, 3, 7, 9}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_prompts_on_the_image_border_are_accepted(kind, backends, demo_images):
    """Points exactly on the corners and a box covering the whole image are valid prompts."""
    image = demo_images["dogs"]
    height, width = image.shape[:2]
    corners = tuple(PointPrompt(x, y) for x, y in ((0, 0), (width, 0), (0, height), (width, height)))
    prompts = PromptSet(objects=(
        ObjectPrompt(1, points=corners),
        ObjectPrompt(2, boxes=(BoxPrompt(0, 0, width, height),)),
    ))
    out = backends[kind].segment(image, prompts)
    assert [i.instance_id for i in out] == [1, 2]
    assert all(i.mask.shape == (height, width) for i in out)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("prompt, words", [
    (ObjectPrompt(1, points=(PointPrompt(-1.0, 5.0),)), "outside the 800x534 image"),
    (ObjectPrompt(1, points=(PointPrompt(10.0, 600.0),)), "outside the 800x534 image"),
    (ObjectPrompt(1, boxes=(BoxPrompt(900, 10, 950, 40),)), "outside the 800x534 image"),
    (ObjectPrompt(1, boxes=(BoxPrompt(50, 50, 40, 80),)), "is empty"),
    (ObjectPrompt(1, points=(PointPrompt(float("nan"), 5.0),)), "not finite"),
])
def test_prompts_outside_the_image_are_refused(kind, prompt, words, backends, demo_images):
    image = demo_images["dog"]
    backend = backends[kind]
    with pytest.raises(PromptError, match=words):
        backend.check_prompts(PromptSet(objects=(prompt,)), *image.shape[:2])
    with count_calls(vision_module(backend)) if kind != "classical" else _nothing() as calls:
        with pytest.raises(PromptError, match=words):
            backend.segment(image, PromptSet(objects=(prompt,)))
    assert calls[0] == 0  # refused before the model runs


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_box_sticking_out_is_clipped_to_the_image(kind, backends):
    checked = backends[kind].check_prompts(
        PromptSet(objects=(ObjectPrompt(4, boxes=(BoxPrompt(-20, 10, 900, 600),)),)), 534, 800)
    assert checked.objects[0].boxes[0] == BoxPrompt(0.0, 10.0, 800.0, 534.0)


@pytest.mark.parametrize("kind", ["classical", "sam2", "sam2_image", "sam3_tracker"])
def test_text_concepts_are_refused_with_a_message_naming_sam3(kind, backends, demo_images):
    backend = backends[kind]
    assert Capability.TEXT not in backend.capabilities
    with pytest.raises(PromptError, match="sam3"):
        backend.segment(demo_images["dog"], PromptSet(concepts=(ConceptPrompt("dog"),)))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_empty_prompt_set_returns_nothing_without_running_the_model(kind, backends, demo_images):
    backend = backends[kind]
    stream = backend.create_stream()
    if kind == "classical":
        assert backend.segment(demo_images["dog"], PromptSet()) == []
        return
    with count_calls(vision_module(backend)) as calls:
        assert backend.segment(demo_images["dog"], PromptSet()) == []
        assert stream.step(demo_images["dog"], PromptSet(), frozenset()) == []
    assert calls[0] == 0


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_stream_keeps_ids_and_tolerates_unknown_removals(kind, backends, bedroom):
    backend = backends[kind]
    stream = backend.create_stream()
    prompts = PromptSet(objects=(
        ObjectPrompt(5, "child", boxes=(BoxPrompt(300, 100, 560, 500),)),
        ObjectPrompt(6, "bed", points=(PointPrompt(700, 400),)),
    ))
    for index, frame in enumerate(bedroom[:3]):
        out = stream.step(frame, prompts, frozenset({5, 6}) if index == 0 else frozenset())
        assert [i.instance_id for i in out] == [5, 6]
        assert all(i.mask.shape == frame.shape[:2] for i in out)
    stream.remove(12345)  # unknown id: no error
    stream.remove(5)
    out = stream.step(bedroom[3], PromptSet(objects=prompts.objects[1:]), frozenset())
    assert [i.instance_id for i in out] == [6]
    stream.reset()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_object_tracker_over_each_backend(kind, backends, bedroom):
    """The tracker's id keeping works with every backend's stream (the node's path)."""
    tracker = ObjectTracker(backends[kind], TrackerConfig(score_threshold=0.0))
    size = (bedroom[0].shape[1], bedroom[0].shape[0])
    added = tracker.apply(PromptUpdate(PromptAction.ADD, label="child", boxes=(BoxPrompt(300, 100, 560, 500),)),
                          size)
    assert added == [1]
    tracker.apply(PromptUpdate(PromptAction.ADD, object_id=40, points=(PointPrompt(700, 400),)), size)
    seen = []
    for frame in bedroom[:3]:
        step = tracker.step(frame)
        seen.append({i.instance_id for i in step.instances} | set(step.frames_lost))
    assert all(ids <= {1, 40} for ids in seen)
    assert set(seen[-1]) == {1, 40}
    with pytest.raises(PromptError, match="unknown object id 99"):
        tracker.apply(PromptUpdate(PromptAction.REMOVE, object_id=99))
    assert tracker.apply(PromptUpdate(PromptAction.REMOVE, object_id=1)) == [1]
    assert tracker.object_ids == [40]


class _nothing:
    """Stand-in for count_calls on backends without a vision module."""

    def __enter__(self) -> list[int]:
        return [0]

    def __exit__(self, *_: object) -> None:
        return None
