"""SAM-specific behaviour: every prompt kind, shared embeddings, batching, concepts, everything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samfusion.errors import PromptError
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
from samfusion.segmentation.registry import create_backend
from samfusion.segmentation.sam_head import EverythingParams
from samfusion.segmentation.tracking import ObjectTracker

from ._helpers import SAM_KINDS, count_calls, make_config, vision_module

TRACKER_KINDS = ("sam2", "sam2_image", "sam3", "sam3_tracker")


def _many_objects(width: int, height: int, count: int) -> tuple[ObjectPrompt, ...]:
    """Objects with every prompt layout: clicks, negative clicks, boxes, box + clicks."""
    rng = np.random.default_rng(count)
    out = []
    for k in range(count):
        x0, y0 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
        box = BoxPrompt(x0, y0, x0 + width * 0.3, y0 + height * 0.3)
        click = PointPrompt(x0 + 5, y0 + 5, positive=bool(k % 3))
        layout = k % 4
        out.append(ObjectPrompt(k + 1, f"obj{k}", points=(click,) * (layout in (0, 2)) + (click,) * (layout == 2),
                                boxes=(box,) * (layout in (1, 3))))
    return tuple(out)


@pytest.mark.parametrize("kind", SAM_KINDS)
def test_one_image_embedding_per_frame_for_all_objects(kind, backends, demo_images):
    backend = backends[kind]
    image = demo_images["groceries"]
    objects = _many_objects(image.shape[1], image.shape[0], 9)
    concepts = (ConceptPrompt("bag"), ConceptPrompt("car")) if kind == "sam3" else ()
    stream = backend.create_stream()
    with count_calls(vision_module(backend)) as calls:
        out = backend.segment(image, PromptSet(objects=objects, concepts=concepts))
        assert calls[0] == 1
        stream.step(image, PromptSet(objects=objects, concepts=concepts), frozenset(o.object_id for o in objects))
        stream.step(image, PromptSet(objects=objects, concepts=concepts), frozenset())
        assert calls[0] == 3
    assert [i.instance_id for i in out if i.instance_id] == list(range(1, 10))


@pytest.mark.parametrize("kind", ["sam2", "sam3_tracker"])
def test_batched_decoding_equals_one_object_at_a_time(kind, backends, demo_images):
    """Objects share the decoder call yet each result equals decoding that object alone."""
    backend = backends[kind]
    image = demo_images["dog"]
    objects = _many_objects(image.shape[1], image.shape[0], 8)
    with torch.inference_mode():
        features = backend.encode(image)
        together = backend.head.decode_objects(features, objects)
        for index, obj in enumerate(objects):
            alone = backend.head.decode_objects(features, [obj])
            torch.testing.assert_close(together.low_res[index], alone.low_res[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(together.scores[index], alone.scores[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["sam2", "sam3_tracker"])
def test_batched_tracking_equals_tracking_each_object_alone(kind, backends, bedroom):
    backend = backends[kind]
    objects = _many_objects(960, 540, 4)
    shared = backend.create_stream()
    singles = {o.object_id: backend.create_stream() for o in objects}
    for index, frame in enumerate(bedroom[:5]):
        changed = frozenset(o.object_id for o in objects) if index == 0 else frozenset()
        together = {i.instance_id: i for i in shared.step(frame, PromptSet(objects=objects), changed)}
        for obj in objects:
            alone = singles[obj.object_id].step(frame, PromptSet(objects=(obj,)), changed & {obj.object_id})[0]
            mine = together[obj.object_id]
            assert mine.score == pytest.approx(alone.score, abs=1e-4)
            assert np.mean(mine.mask != alone.mask) < 1e-3


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_mask_prompt_and_mixed_prompts(kind, backends, demo_images):
    backend = backends[kind]
    image = demo_images["truck"]
    height, width = image.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[300:900, 200:1500] = True
    prompts = PromptSet(objects=(
        ObjectPrompt(1, "from mask", mask=mask),
        ObjectPrompt(2, "mask + click", mask=mask, points=(PointPrompt(800, 600),)),
        ObjectPrompt(3, "clicks", points=(PointPrompt(800, 600), PointPrompt(100, 100, positive=False))),
    ))
    out = backend.segment(image, prompts)
    assert [(i.instance_id, i.label) for i in out] == [(1, "from mask"), (2, "mask + click"), (3, "clicks")]
    stream = backend.create_stream()
    first = stream.step(image, prompts, frozenset({1, 2, 3}))
    assert [i.instance_id for i in first] == [1, 2, 3]
    if kind != "sam2_image":  # a video stream returns the mask prompt itself on the prompted frame
        inter = np.count_nonzero(first[0].mask & mask)
        assert inter / np.count_nonzero(first[0].mask | mask) > 0.97  # up to the low-res round trip
        assert first[0].score > 0.99


@pytest.mark.parametrize("kind", TRACKER_KINDS)
def test_segment_everything(kind, checkpoints, demo_images):
    backend = create_backend(make_config(kind, checkpoints, max_objects=5))
    backend.everything_params = EverythingParams(points_per_side=4, points_per_batch=8, iou_threshold=0.0,
                                                 stability_threshold=0.0, nms_iou=0.7)
    image = demo_images["dogs"]
    out = backend.segment(image, PromptSet(everything=True))
    assert 1 <= len(out) <= 5
    assert all(i.instance_id == 0 and i.label == "" and i.mask.shape == image.shape[:2] for i in out)
    assert [i.score for i in out] == sorted((i.score for i in out), reverse=True)
    strict = create_backend(make_config(kind, checkpoints))
    strict.everything_params = EverythingParams(points_per_side=4, iou_threshold=1.0)
    assert strict.segment(image, PromptSet(everything=True)) == []  # nothing passes an IoU of 1


def test_everything_detections_get_tracker_ids(checkpoints, bedroom):
    backend = create_backend(make_config("sam2", checkpoints, max_objects=4))
    backend.everything_params = EverythingParams(points_per_side=3, iou_threshold=0.0, stability_threshold=0.0)
    tracker = ObjectTracker(backend, TrackerConfig(score_threshold=0.0))
    tracker.apply(PromptUpdate(PromptAction.SEGMENT_ALL), (960, 540))
    first = tracker.step(bedroom[0])
    again = tracker.step(bedroom[0])
    assert first.instances and all(i.instance_id > 0 for i in first.instances)
    assert [i.instance_id for i in again.instances] == [i.instance_id for i in first.instances]


# ---- SAM 3 concepts ------------------------------------------------------------------------
def test_concepts_return_scored_instances_per_text(backends, demo_images):
    backend = backends["sam3"]
    image = demo_images["dogs"]
    out = backend.segment(image, PromptSet(concepts=(ConceptPrompt("dog"), ConceptPrompt("stick"))))
    assert out, "a zero score threshold keeps every non-duplicate query"
    assert {i.label for i in out} <= {"dog", "stick"}
    assert all(i.instance_id == 0 and i.mask.shape == image.shape[:2] and 0 < i.score <= 1 for i in out)
    assert len(out) <= 2 * backend.detector.config.detr_decoder_config.num_queries
    assert [i.score for i in out] == sorted((i.score for i in out), reverse=True)


def test_concept_score_threshold_and_max_objects(checkpoints, backends, demo_images):
    image = demo_images["dogs"]
    prompts = PromptSet(concepts=(ConceptPrompt("dog"),))
    everything = backends["sam3"].segment(image, prompts)
    middle = sorted(i.score for i in everything)[len(everything) // 2]
    strict = create_backend(make_config("sam3", checkpoints, score_threshold=middle))
    kept = strict.segment(image, prompts)
    assert kept and all(i.score > middle for i in kept)
    assert len(kept) < len(everything)
    capped = create_backend(make_config("sam3", checkpoints, max_objects=2))
    top = capped.segment(image, prompts)
    assert [i.score for i in top] == pytest.approx([i.score for i in everything[:2]])


def test_concept_duplicates_are_removed(checkpoints, demo_images):
    backend = create_backend(make_config("sam3", checkpoints))
    image = demo_images["dog"]
    prompts = PromptSet(concepts=(ConceptPrompt("dog"),))
    backend.nms_iou = 1.0
    all_queries = backend.segment(image, prompts)
    assert len(all_queries) == backend.detector.config.detr_decoder_config.num_queries
    backend.nms_iou = 0.3
    deduplicated = backend.segment(image, prompts)
    assert len(deduplicated) < len(all_queries)
    for a in range(len(deduplicated)):
        for b in range(a + 1, len(deduplicated)):
            inter = np.count_nonzero(deduplicated[a].mask & deduplicated[b].mask)
            union = np.count_nonzero(deduplicated[a].mask | deduplicated[b].mask)
            assert inter / max(union, 1) <= 0.3 + 0.05  # measured at full resolution, NMS at low res


def test_text_embeddings_are_cached(backends, demo_images):
    backend = backends["sam3"]
    prompts = PromptSet(concepts=(ConceptPrompt("grocery bag"),))
    with count_calls(backend.detector.text_encoder) as calls:
        backend.segment(demo_images["groceries"], prompts)
        backend.segment(demo_images["groceries"], prompts)
    assert calls[0] <= 1


def test_box_exemplars_need_torchvision(backends, demo_images):
    from transformers.utils import is_torchvision_available

    backend = backends["sam3"]
    concept = ConceptPrompt("dog", exemplars=(BoxPrompt(10, 10, 200, 200), BoxPrompt(300, 50, 500, 300, False)))
    boxes, labels = backend._exemplars(backend.transform.geometry(534, 800), (concept, ConceptPrompt("bowl")))
    assert boxes.shape == (2, 2, 4) and labels.tolist() == [[1, 0], [-10, -10]]
    np.testing.assert_allclose(boxes[0, 0].float().numpy(), [105 / 800, 105 / 534, 190 / 800, 190 / 534], rtol=1e-5)
    if is_torchvision_available():  # the torchvision lane; test_processor_parity checks the values
        assert {i.label for i in backend.segment(demo_images["dog"], PromptSet(concepts=(concept,)))} == {"dog"}
    else:
        with pytest.raises(PromptError, match="need torchvision"):
            backend.segment(demo_images["dog"], PromptSet(concepts=(concept,)))


def test_concepts_and_objects_together_keep_their_ids(backends, bedroom):
    tracker = ObjectTracker(backends["sam3"], TrackerConfig(score_threshold=0.0, max_objects=64))
    tracker.apply(PromptUpdate(PromptAction.ADD, object_id=500, label="child",
                               boxes=(BoxPrompt(300, 100, 560, 500),)), (960, 540))
    tracker.apply(PromptUpdate(PromptAction.ADD, concepts=("person",)), (960, 540))
    first = tracker.step(bedroom[0])
    second = tracker.step(bedroom[0])
    ids_first = [i.instance_id for i in first.instances]
    assert 500 in ids_first and len(ids_first) > 1
    assert {i.label for i in first.instances if i.instance_id != 500} == {"person"}
    assert [i.instance_id for i in second.instances] == ids_first
