"""Pre- and post-processing against the transformers processors' numerics.

In the main environment the transformers image processors of SAM 2 / SAM 3 cannot run (they need
torchvision), so pixel values are compared with a reference written from the processors'
documented configuration (read from the transformers source: size, mean, std, bilinear resample,
rescale 1/255) and torchvision's uint8 resize behaviour, and the resize itself is checked against
PIL's bilinear filter. Coordinate mapping, exemplar boxes and mask prompts are compared with the
transformers processor classes that do run here. test_processor_parity.py compares with the
image processors themselves in the torchvision lane of scripts/test.sh.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from samfusion.errors import BackendError
from samfusion.segmentation.checkpoints import SAM2_IMAGE_SPEC, SAM3_IMAGE_SPEC
from samfusion.segmentation.preprocess import (
    FrameGeometry,
    ImageSpec,
    ImageTransform,
    mask_nms,
    masks_to_model,
    point_grid,
    select_best_mask,
    stability_score,
    upsample_logits,
)
from samfusion.segmentation.prompts import BoxPrompt, ObjectPrompt, PointPrompt

CPU = torch.device("cpu")


def _processor_defaults(module_name: str, class_name: str) -> dict[str, object]:
    """Class attributes of a transformers image processor, read from its source (no torchvision)."""
    import importlib.util

    from transformers import image_utils

    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin
    tree = ast.parse(open(spec.origin).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    values: dict[str, object] = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            if isinstance(value, ast.Name):
                values[name] = getattr(image_utils, value.id, value.id)
            elif isinstance(value, ast.Attribute):
                values[name] = value.attr
            else:
                values[name] = ast.literal_eval(value)
    return values


@pytest.mark.parametrize("module, cls, spec", [
    ("transformers.models.sam2.image_processing_sam2", "Sam2ImageProcessor", SAM2_IMAGE_SPEC),
    ("transformers.models.sam3.image_processing_sam3", "Sam3ImageProcessor", SAM3_IMAGE_SPEC),
])
def test_default_specs_are_the_processor_defaults(module, cls, spec):
    values = _processor_defaults(module, cls)
    assert values["size"] == {"height": spec.height, "width": spec.width}
    assert tuple(values["image_mean"]) == spec.mean
    assert tuple(values["image_std"]) == spec.std
    assert values["resample"] == "BILINEAR"
    assert values["do_pad"] is None and values["do_resize"] and values["do_normalize"]
    assert spec.rescale_factor == pytest.approx(1 / 255)


def _reference_pixels(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Processor numerics on CPU: torchvision resizes uint8 with torch's uint8 antialias kernel,
    then rescale by 1/255 and normalise with mean / std (float64 here)."""
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None]
    resized = F.interpolate(pixels, size=(spec.height, spec.width), mode="bilinear", antialias=True,
                            align_corners=False)[0].numpy().astype(np.float64)
    mean = np.array(spec.mean)[:, None, None]
    std = np.array(spec.std)[:, None, None]
    return (resized * spec.rescale_factor - mean) / std


@pytest.mark.parametrize("spec", [SAM2_IMAGE_SPEC, SAM3_IMAGE_SPEC], ids=["sam2", "sam3"])
@pytest.mark.parametrize("name", ["truck", "truck_portrait", "groceries"])
def test_pixel_values_match_the_processor_numerics(spec, name, demo_images):
    image = demo_images[name]
    pixel_values, geometry = ImageTransform(spec, CPU, torch.float32)(image)
    assert pixel_values.shape == (1, 3, spec.height, spec.width)
    assert pixel_values.dtype == torch.float32
    assert (geometry.height, geometry.width) == image.shape[:2]
    reference = _reference_pixels(image, spec)
    assert np.abs(pixel_values[0].numpy() - reference).max() < 1e-4


@pytest.mark.parametrize("native, exact", [(True, 0.98), (False, 0.8)], ids=["uint8-kernel", "float-round"])
def test_resize_agrees_with_pil_bilinear(native, exact, demo_images):
    """Both resize paths (CPU uint8 kernel, GPU-style float + round) match PIL within one level.

    PIL and torch's uint8 kernel use fixed-point weights, so the float path rounds a few more
    pixels the other way (measured: 87 % identical on dogs.jpg, never more than one level off).
    """
    image = demo_images["dogs"]
    transform = ImageTransform(SAM2_IMAGE_SPEC, CPU, torch.float32)
    ours = transform.resize_uint8(image, native=native)[0].permute(1, 2, 0).numpy().astype(int)
    pil = np.asarray(Image.fromarray(image).resize((1024, 1024), Image.BILINEAR)).astype(int)
    diff = np.abs(ours - pil)
    assert diff.max() <= 1
    assert (diff == 0).mean() > exact


def test_model_dtype_is_applied_to_pixel_values(demo_images):
    image = demo_images["dog"]
    fp32, _ = ImageTransform(SAM3_IMAGE_SPEC, CPU, torch.float32)(image)
    bf16, _ = ImageTransform(SAM3_IMAGE_SPEC, CPU, torch.bfloat16)(image)
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(bf16, fp32.to(torch.bfloat16))


def test_spec_from_processor_config_file_values():
    data = {"image_processor_type": "Sam2ImageProcessorFast", "size": {"height": 512, "width": 512},
            "image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6], "rescale_factor": 0.5}
    spec = ImageSpec.from_processor_dict(data, SAM2_IMAGE_SPEC)
    assert spec == ImageSpec(512, 512, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 0.5)
    assert ImageSpec.from_processor_dict({}, SAM3_IMAGE_SPEC) == SAM3_IMAGE_SPEC
    with pytest.raises(BackendError, match="expected 3 values"):
        ImageSpec.from_processor_dict({"image_mean": [0.5]}, SAM2_IMAGE_SPEC)


# ---- coordinates ---------------------------------------------------------------------------
@pytest.mark.parametrize("height, width", [(534, 800), (1800, 1200), (375, 1242), (1, 1)])
@pytest.mark.parametrize("target", [1024, 1008])
def test_point_mapping_matches_the_sam2_processor(height, width, target):
    from transformers.models.sam2.processing_sam2 import Sam2Processor

    corners = [(0, 0), (width, 0), (0, height), (width, height), (width / 3, height / 7)]
    geometry = FrameGeometry(height, width, target, target)
    ours = geometry.points_to_model([PointPrompt(x, y) for x, y in corners])
    theirs = Sam2Processor._normalize_coordinates(None, target, torch.tensor(corners, dtype=torch.float32),
                                                  (height, width))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6, atol=1e-4)
    assert ours[3].tolist() == pytest.approx([target, target])  # far corner -> far corner


@pytest.mark.parametrize("height, width", [(534, 800), (1800, 1200)])
def test_box_mapping_matches_the_processors(height, width):
    from transformers.models.sam2.processing_sam2 import Sam2Processor
    from transformers.models.sam3.processing_sam3 import Sam3Processor, box_xyxy_to_cxcywh

    boxes = [BoxPrompt(0, 0, width, height), BoxPrompt(10.5, 20.25, 300, height - 1, positive=False)]
    raw = torch.from_numpy(np.stack([b.as_array() for b in boxes]).astype(np.float32))
    geometry = FrameGeometry(height, width, 1024, 1024)
    sam2 = Sam2Processor._normalize_coordinates(None, 1024, raw, (height, width), is_bounding_box=True)
    np.testing.assert_allclose(geometry.boxes_to_model(boxes), sam2.numpy(), rtol=1e-6, atol=1e-4)
    sam3 = box_xyxy_to_cxcywh(Sam3Processor._normalize_coordinates(None, raw, (height, width), is_bounding_box=True))
    np.testing.assert_allclose(geometry.boxes_to_cxcywh(boxes), sam3.numpy(), rtol=1e-6, atol=1e-6)
    assert geometry.boxes_to_cxcywh(boxes[:1]).tolist() == [[0.5, 0.5, 1.0, 1.0]]


def test_prompt_tokens_follow_the_sam2_video_processor(backends):
    """Box corners (labels 2, 3) come first, then clicks (1 / 0), in model pixels."""
    head = backends["sam2"].head
    geometry = FrameGeometry(400, 1000, head.input_size, head.input_size)
    obj = ObjectPrompt(1, boxes=(BoxPrompt(100, 50, 500, 350),),
                       points=(PointPrompt(200, 100), PointPrompt(300, 200, positive=False)))
    points, labels = head.prompt_tokens([obj], geometry)
    s = head.input_size
    expected = [[100 * s / 1000, 50 * s / 400], [500 * s / 1000, 350 * s / 400],
                [200 * s / 1000, 100 * s / 400], [300 * s / 1000, 200 * s / 400]]
    assert points.shape == (1, 1, 4, 2) and labels.shape == (1, 1, 4)
    np.testing.assert_allclose(points[0, 0].numpy(), expected, rtol=1e-6)
    assert labels[0, 0].tolist() == [2, 3, 1, 0]


def test_mask_prompt_resize_matches_the_sam2_video_processor():
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
    from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor

    rng = np.random.default_rng(3)
    masks = [rng.random((300, 500)) > 0.6, np.zeros((300, 500), bool)]
    masks[1][40:200, 100:420] = True
    processor = object.__new__(Sam2VideoProcessor)
    processor.target_size = 128
    session = Sam2VideoInferenceSession(video_height=300, video_width=500, dtype=torch.float32)
    processor.process_new_mask_for_video_frame(session, 0, [1, 2], masks)
    ours = masks_to_model(masks, (128, 128), CPU, torch.float32)
    for index in range(2):
        theirs = session.mask_inputs_per_obj[index][0]
        assert torch.equal(ours[index:index + 1], theirs)


# ---- post-processing -----------------------------------------------------------------------
def _bilinear_reference(low: np.ndarray, height: int, width: int) -> np.ndarray:
    """align_corners=False bilinear upsampling in numpy (the processors' post_process_masks)."""
    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo
    y0, y1, fy = axis(height, low.shape[0])
    x0, x1, fx = axis(width, low.shape[1])
    top = low[y0][:, x0] * (1 - fx) + low[y0][:, x1] * fx
    bottom = low[y1][:, x0] * (1 - fx) + low[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


@pytest.mark.parametrize("height, width", [(534, 800), (1800, 1200)])
def test_mask_upsampling_matches_post_process_masks(height, width):
    low = torch.randn(2, 256, 256, generator=torch.Generator().manual_seed(1))
    up = upsample_logits(low, FrameGeometry(height, width, 1024, 1024))
    assert up.shape == (2, height, width)
    for index in range(2):
        reference = _bilinear_reference(low[index].double().numpy(), height, width)
        assert np.abs(up[index].numpy() - reference).max() < 1e-4


def test_best_mask_is_chosen_by_predicted_iou():
    masks = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 2, 2)
    iou = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.7]])
    best, best_iou = select_best_mask(masks, iou)
    assert torch.equal(best, torch.stack([masks[0, 1], masks[1, 0]]))
    assert best_iou.tolist() == pytest.approx([0.9, 0.8])


def test_stability_score_of_a_known_mask():
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # 4 pixels surely inside
    logits[0, 2, :2] = 0.5  # 2 pixels between the thresholds
    assert stability_score(logits, 0.0, 1.0).tolist() == pytest.approx([4 / 6])
    assert stability_score(torch.full((1, 2, 2), -9.0), 0.0, 1.0).tolist() == [1.0]


def test_mask_nms_drops_duplicates_and_keeps_distinct_masks():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :5, :5] = True
    masks[1, :5, :4] = True  # IoU 0.8 with mask 0
    masks[2, 5:, 5:] = True
    masks[3, 5:, 5:9] = True  # IoU 0.8 with mask 2, scores higher
    keep = mask_nms(masks, torch.tensor([0.9, 0.8, 0.5, 0.6]), 0.7)
    assert keep.tolist() == [True, False, False, True]
    assert mask_nms(masks, torch.tensor([0.9, 0.8, 0.5, 0.6]), 0.9).tolist() == [True] * 4
    assert mask_nms(masks[:0], torch.zeros(0), 0.5).tolist() == []


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**31 - 1), st.integers(min_value=1, max_value=12),
       st.floats(min_value=0.1, max_value=0.9))
def test_mask_nms_properties(seed, count, threshold):
    """Kept masks never overlap above the threshold; each dropped one overlaps a better mask."""
    gen = torch.Generator().manual_seed(seed)
    boxes = torch.randint(0, 12, (count, 4), generator=gen)
    masks = torch.zeros(count, 16, 16, dtype=torch.bool)
    for k, (a, b, c, d) in enumerate(boxes.tolist()):
        masks[k, min(a, c):max(a, c) + 4, min(b, d):max(b, d) + 4] = True
    scores = torch.rand(count, generator=gen)
    keep = mask_nms(masks, scores, threshold)
    flat = masks.flatten(1).float()
    inter = flat @ flat.T
    iou = inter / (flat.sum(1)[:, None] + flat.sum(1)[None, :] - inter)
    kept = keep.nonzero().flatten().tolist()
    assert kept  # the best mask always survives
    assert int(torch.argmax(scores)) in kept
    for i in kept:
        for j in kept:
            assert i == j or iou[i, j] <= threshold
    for i in (~keep).nonzero().flatten().tolist():
        assert any(iou[i, j] > threshold and scores[j] > scores[i] for j in range(count))


def test_point_grid_covers_cell_centres():
    grid = point_grid(4, FrameGeometry(100, 200, 64, 64))
    assert grid.shape == (16, 2)
    assert sorted(set(grid[:, 0].tolist())) == [8.0, 24.0, 40.0, 56.0]
    assert grid[0].tolist() == [8.0, 8.0] and grid[-1].tolist() == [56.0, 56.0]
