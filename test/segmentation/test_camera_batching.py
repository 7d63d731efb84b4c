"""Several cameras through one loaded SAM model: one image-encoder call per frame for all of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samfusion.pipeline.perception import PerceptionConfig, PerceptionPipeline
from samfusion.segmentation.config import BackendConfig, TrackerConfig
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt, PromptAction, PromptUpdate
from samfusion.segmentation.registry import create_backend


def _pipeline(checkpoint, backend=None):
    config = PerceptionConfig(backend=BackendConfig(backend="sam2", checkpoint=str(checkpoint)),
                              tracker=TrackerConfig(score_threshold=0.0), cleanup=False)
    pipeline = PerceptionPipeline(config, backend=backend or create_backend(config.backend))
    for name in ("left", "right"):
        pipeline.camera(name)
    pipeline.apply_prompt(PromptUpdate(PromptAction.ADD, object_id=1, target="left",
                                       boxes=(BoxPrompt(100, 80, 400, 300),)))
    pipeline.apply_prompt(PromptUpdate(PromptAction.ADD, object_id=2, target="right",
                                       points=(PointPrompt(320, 200),)))
    return pipeline


@pytest.fixture(scope="module")
def frames(bedroom):
    # two "cameras" looking at different frames of the real sequence
    return [(bedroom[i], bedroom[(i + 10) % len(bedroom)]) for i in range(3)]


def _tensors(frame) -> list:
    """Every tensor of a frame's features: tracker levels and, for SAM 3, the detector's vision output."""
    out = list(frame.feats + frame.pos)
    vision = getattr(frame, "vision", None)
    if vision is not None:
        out += [vision.last_hidden_state, *vision.fpn_hidden_states, *vision.fpn_position_encoding]
    return out


@pytest.mark.parametrize("kind, count", [("sam2", 6), ("sam3", 6 + 1 + 2 * 4)])
def test_encode_many_equals_encode_per_frame(backends, frames, kind, count):
    backend = backends[kind]
    left, right = frames[0]
    with backend.lock, torch.inference_mode():
        batched = backend.encode_many([left, right])
        single = [backend.encode(left), backend.encode(right)]
    for b, s in zip(batched, single):
        assert len(_tensors(b)) == len(_tensors(s)) == count
        for fb, fs in zip(_tensors(b), _tensors(s)):
            assert fb.shape == fs.shape
            torch.testing.assert_close(fb, fs, atol=1e-4, rtol=1e-4)
        assert b.geometry == s.geometry


def test_segment_many_matches_per_camera_and_encodes_once(checkpoints, frames, monkeypatch):
    batched = _pipeline(checkpoints["sam2_video"])
    sequential = _pipeline(checkpoints["sam2_video"])
    calls = []
    model = batched.backend.model
    original = model.get_image_features
    monkeypatch.setattr(model, "get_image_features", lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k))
    for t, (left, right) in enumerate(frames):
        out = batched.segment_many([("left", left, float(t)), ("right", right, float(t))])
        ref = [sequential.segment("left", left, float(t)), sequential.segment("right", right, float(t))]
        for got, want in zip(out, ref):
            assert [i.instance_id for i in got.instances] == [i.instance_id for i in want.instances]
            for a, b in zip(got.instances, want.instances):
                assert a.score == pytest.approx(b.score, abs=1e-3)
                assert np.mean(a.mask != b.mask) < 1e-3  # bit-level float noise at mask edges only
    assert calls == [2, 2, 2]  # one encoder call with both cameras per frame


def test_cameras_without_prompts_are_not_encoded(checkpoints, frames, monkeypatch):
    pipeline = _pipeline(checkpoints["sam2_video"])
    pipeline.apply_prompt(PromptUpdate(PromptAction.CLEAR, target="right"))
    calls = []
    model = pipeline.backend.model
    original = model.get_image_features
    monkeypatch.setattr(model, "get_image_features", lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k))
    left, right = frames[0]
    out = pipeline.segment_many([("left", left, 0.0), ("right", right, 0.0)])
    assert [i.instance_id for i in out[0].instances] == [1] and out[1].instances == []
    assert calls == [1]


def test_sam3_concepts_and_objects_on_two_cameras_encode_once(checkpoints, frames, monkeypatch):
    def pipeline():
        config = PerceptionConfig(backend=BackendConfig(backend="sam3", checkpoint=str(checkpoints["sam3_video"]),
                                                        score_threshold=0.0),
                                  tracker=TrackerConfig(score_threshold=0.0), cleanup=False)
        p = PerceptionPipeline(config)
        for name in ("left", "right"):
            p.camera(name)
        p.apply_prompt(PromptUpdate(PromptAction.ADD, object_id=1, target="left", boxes=(BoxPrompt(100, 80, 400, 300),)))
        p.apply_prompt(PromptUpdate(PromptAction.ADD, target="right", concepts=("person",)))
        return p

    batched, sequential = pipeline(), pipeline()
    calls = []
    detector = batched.backend.detector
    original = detector.get_vision_features
    monkeypatch.setattr(detector, "get_vision_features",
                        lambda **k: calls.append(k["pixel_values"].shape[0]) or original(**k))
    for t, (left, right) in enumerate(frames):
        out = batched.segment_many([("left", left, float(t)), ("right", right, float(t))])
        ref = [sequential.segment("left", left, float(t)), sequential.segment("right", right, float(t))]
        for got, want in zip(out, ref):
            assert [i.instance_id for i in got.instances] == [i.instance_id for i in want.instances]
            assert [i.label for i in got.instances] == [i.label for i in want.instances]
            for a, b in zip(got.instances, want.instances):
                assert a.score == pytest.approx(b.score, abs=1e-3)
                assert np.mean(a.mask != b.mask) < 1e-3
    assert len(out[1].instances) > 0 and {i.label for i in out[1].instances} == {"person"}
    assert calls == [2, 2, 2]
