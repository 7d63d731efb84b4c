"""Live tracking with the SAM video streams: bounded memory, lost / re-acquired, refine, remove."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samfusion.segmentation.config import TrackerConfig
from samfusion.segmentation.prompts import (
    BoxPrompt,
    ObjectPrompt,
    PointPrompt,
    PromptAction,
    PromptSet,
    PromptUpdate,
)
from samfusion.segmentation.registry import create_backend
from samfusion.segmentation.sam2_backend import SamVideoStream
from samfusion.segmentation.tracking import ObjectTracker

from ._helpers import make_config

VIDEO_KINDS = ("sam2", "sam3_tracker")
OBJECTS = PromptSet(objects=(
    ObjectPrompt(1, "child", boxes=(BoxPrompt(300, 100, 560, 500),)),
    ObjectPrompt(2, "bed", points=(PointPrompt(700, 420),)),
    ObjectPrompt(3, "lamp", points=(PointPrompt(100, 80), PointPrompt(150, 300, positive=False))),
))


def _presence_heads(backend) -> list[torch.nn.Module]:
    return [m.pred_obj_score_head for m in backend.head.model.modules() if hasattr(m, "pred_obj_score_head")]


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_memory_stays_bounded_over_hundreds_of_frames(kind, backends, bedroom):
    stream = backends[kind].create_stream()
    assert isinstance(stream, SamVideoStream)
    tracker = stream.tracker
    bound = tracker.state_bound(len(OBJECTS.objects))
    counts = []
    for index in range(220):
        frame = bedroom[index % len(bedroom)]
        out = stream.step(frame, OBJECTS, frozenset({1, 2, 3}) if index == 0 else frozenset())
        assert [i.instance_id for i in out] == [1, 2, 3]
        counts.append(tracker.state_tensor_count())
        assert counts[-1] <= bound
    assert counts[-1] == counts[50] == counts[10]  # flat after the banks fill up
    config = backends[kind].head.model.config
    for bank in tracker._banks.values():
        assert len(bank.recent) <= config.num_maskmem - 1
        assert len(bank.pointers) <= config.max_object_pointers_in_encoder - 1
        assert len(bank.cond) == 1
    assert tracker.object_ids == [1, 2, 3]


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_refine_adds_a_conditioning_frame_and_stays_bounded(kind, backends, bedroom):
    stream = backends[kind].create_stream()
    stream.step(bedroom[0], OBJECTS, frozenset({1, 2, 3}))
    for index in range(1, 12):  # refine object 2 on every frame
        moved = ObjectPrompt(2, "bed", points=(PointPrompt(700 - 10 * index, 420),))
        prompts = PromptSet(objects=(OBJECTS.objects[0], moved, OBJECTS.objects[2]))
        stream.step(bedroom[index], prompts, frozenset({2}))
    banks = stream.tracker._banks
    assert len(banks[2].cond) == stream.tracker.max_cond
    assert [f for f, _, _ in banks[2].cond] == list(range(12 - stream.tracker.max_cond, 12))
    assert len(banks[1].cond) == 1


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_removed_and_vanished_objects_drop_their_memory(kind, backends, bedroom):
    stream = backends[kind].create_stream()
    stream.step(bedroom[0], OBJECTS, frozenset({1, 2, 3}))
    stream.remove(2)
    stream.remove(999)  # unknown: ignored
    assert stream.tracker.object_ids == [1, 3]
    only_first = PromptSet(objects=OBJECTS.objects[:1])
    assert [i.instance_id for i in stream.step(bedroom[1], only_first, frozenset())] == [1]
    assert stream.tracker.object_ids == [1]
    stream.reset()
    assert stream.tracker.object_ids == [] and stream.tracker.state_tensor_count() == 0


def test_streams_share_the_model_but_not_the_state(backends, bedroom):
    backend = backends["sam2"]
    first, second = backend.create_stream(), backend.create_stream()
    assert first.backend is second.backend and first.tracker.model is second.tracker.model
    first.step(bedroom[0], OBJECTS, frozenset({1, 2, 3}))
    second.step(bedroom[5], PromptSet(objects=OBJECTS.objects[:1]), frozenset({1}))
    assert first.tracker.object_ids == [1, 2, 3] and second.tracker.object_ids == [1]
    first.remove(1)
    assert second.tracker.object_ids == [1]


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_lost_objects_are_reported_and_reacquired(kind, checkpoints, bedroom):
    """Presence drops (object head forced negative): lost after N frames; restored: same id back."""
    backend = create_backend(make_config(kind, checkpoints))
    tracker = ObjectTracker(backend, TrackerConfig(score_threshold=0.3, lost_after=2))
    size = (960, 540)
    tracker.apply(PromptUpdate(PromptAction.ADD, object_id=7, label="child", boxes=(BoxPrompt(300, 100, 560, 500),)),
                  size)
    assert [i.instance_id for i in tracker.step(bedroom[0]).instances] == [7]
    assert [i.instance_id for i in tracker.step(bedroom[1]).instances] == [7]
    heads = _presence_heads(backend)
    saved = [h.proj_out.bias.detach().clone() for h in heads]
    with torch.no_grad():
        for head in heads:
            head.proj_out.bias.fill_(-30.0)
    steps = [tracker.step(frame) for frame in bedroom[2:5]]
    assert all(s.instances == [] for s in steps)
    assert [s.frames_lost.get(7, 0) for s in steps] == [0, 2, 3]
    assert steps[-1].lost_ids == [7]
    with torch.no_grad():
        for head, bias in zip(heads, saved):
            head.proj_out.bias.copy_(bias)
    back = tracker.step(bedroom[5])
    assert [i.instance_id for i in back.instances] == [7]
    assert back.frames_lost[7] == 0 and back.lost_ids == []


def test_wide_object_pointers_are_split_into_memory_tokens(tmp_path, bedroom):
    """Hidden 128 > 64 memory channels: each pointer becomes two memory tokens (full-size layout)."""
    import transformers

    from samfusion.segmentation.config import BackendConfig
    from samfusion.segmentation.sam_configs import save_random_checkpoint, tiny_sam2_config

    path = save_random_checkpoint(transformers.Sam2VideoModel, tiny_sam2_config(hidden=128), tmp_path / "wide")
    backend = create_backend(BackendConfig(backend="sam2", checkpoint=str(path), score_threshold=0.0))
    shared = backend.create_stream()
    alone = backend.create_stream()
    for index, frame in enumerate(bedroom[:4]):
        changed = frozenset({1, 2, 3}) if index == 0 else frozenset()
        together = shared.step(frame, OBJECTS, changed)
        single = alone.step(frame, PromptSet(objects=OBJECTS.objects[1:2]), changed & {2})
        assert together[1].score == pytest.approx(single[0].score, abs=1e-4)
    banks = list(shared.tracker._banks.values())
    pointers, _ = shared.tracker._pointer_tokens(banks, shared.tracker._frame)
    assert pointers.shape == (2 * len(shared.tracker._pointers(banks[0], shared.tracker._frame)), 3, 64)


def test_image_only_checkpoint_streams_reprompt_every_frame(backends, bedroom):
    backend = backends["sam2_image"]
    stream = backend.create_stream()
    assert not hasattr(stream, "tracker")
    out = [stream.step(bedroom[0], OBJECTS, frozenset()) for _ in range(2)]
    assert [[i.instance_id for i in o] for o in out] == [[1, 2, 3], [1, 2, 3]]
    assert np.array_equal(out[0][0].mask, out[1][0].mask)  # no memory: same frame, same result


def test_concept_stream_gives_new_detections_new_ids(backends, bedroom):
    tracker = ObjectTracker(backends["sam3"], TrackerConfig(score_threshold=0.0, max_objects=40))
    tracker.apply(PromptUpdate(PromptAction.ADD, concepts=("child",)), (960, 540))
    ids = []
    for frame in bedroom[:3]:
        step = tracker.step(frame)
        ids.append({i.instance_id for i in step.instances})
        assert all(i.label == "child" for i in step.instances)
    assert ids[0] and all(i > 0 for i in ids[0])
    assert len(ids[0] & ids[1]) >= len(ids[0]) // 2  # matched by mask IoU across frames
