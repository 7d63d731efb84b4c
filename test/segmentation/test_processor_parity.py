"""Equality with the transformers SAM processors and models run the documented way.

The image processors (and SAM 3's exemplar pooling) need torchvision, which cannot be installed
beside the project's CPU torch; ``scripts/test.sh`` runs this module (with the rest of
test/segmentation) in a second virtualenv that has torch + torchvision (``.venv-tv``, made by
``scripts/setup_torchvision_lane.sh``). In the main environment these tests skip.

The reference is what a transformers user writes: processor -> model -> processor
post-processing. Our pipeline (torch pre-processing, shared embeddings, batched decoding,
upsampling on the device) must give the same pixels, masks and scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.utils import is_torchvision_available

from samfusion.segmentation.checkpoints import SAM2_IMAGE_SPEC, SAM3_IMAGE_SPEC
from samfusion.segmentation.preprocess import ImageTransform, upsample_logits
from samfusion.segmentation.prompts import BoxPrompt, ConceptPrompt, ObjectPrompt, PointPrompt, PromptSet
from samfusion.segmentation.registry import create_backend

from ._helpers import make_config

pytestmark = pytest.mark.skipif(
    not is_torchvision_available(),
    reason="torchvision is not installed here (it cannot sit beside the CPU torch build); "
           "scripts/test.sh runs these in the torchvision lane (.venv-tv)",
)

CPU = torch.device("cpu")


def _image_processor(name: str, size: int):
    import transformers

    return getattr(transformers, name)(size={"height": size, "width": size})


@pytest.mark.parametrize("name, spec", [("Sam2ImageProcessor", SAM2_IMAGE_SPEC),
                                        ("Sam3ImageProcessor", SAM3_IMAGE_SPEC)], ids=["sam2", "sam3"])
@pytest.mark.parametrize("image", ["truck", "truck_portrait", "groceries", "dog"])
def test_pixel_values_equal_the_image_processor(name, spec, image, demo_images):
    rgb = demo_images[image]
    reference = _image_processor(name, spec.height)(images=rgb, return_tensors="pt")
    ours, geometry = ImageTransform(spec, CPU, torch.float32)(rgb)
    assert torch.equal(ours, reference["pixel_values"])
    assert reference["original_sizes"].tolist() == [[geometry.height, geometry.width]]


@pytest.mark.parametrize("height, width", [(1200, 1800), (1800, 1200), (375, 1242), (7, 5)])
def test_mask_upsampling_equals_post_process_masks(height, width):
    from transformers import Sam2ImageProcessor

    generator = torch.Generator().manual_seed(height * width)
    logits = torch.randn(3, 256, 256, generator=generator) * 4
    reference = Sam2ImageProcessor().post_process_masks([logits[None]], original_sizes=[(height, width)])[0][0]
    ours = upsample_logits(logits, ImageTransform(SAM2_IMAGE_SPEC, CPU, torch.float32).geometry(height, width)) > 0.0
    assert reference.shape == (3, height, width)
    assert torch.equal(ours, reference)


PROMPTS = {
    "point": (ObjectPrompt(1, points=(PointPrompt(500, 375),)),
              dict(input_points=[[[[500, 375]]]], input_labels=[[[1]]]), True),
    "corner point": (ObjectPrompt(1, points=(PointPrompt(1799, 0),)),
                     dict(input_points=[[[[1799, 0]]]], input_labels=[[[1]]]), True),
    "box": (ObjectPrompt(1, boxes=(BoxPrompt(75, 275, 1725, 850),)),
            dict(input_boxes=[[[75, 275, 1725, 850]]]), False),
    "box and negative click": (ObjectPrompt(1, boxes=(BoxPrompt(75, 275, 1725, 850),),
                                            points=(PointPrompt(500, 375, False),)),
                               dict(input_boxes=[[[75, 275, 1725, 850]]], input_points=[[[[500, 375]]]],
                                    input_labels=[[[0]]]), False),
}


@pytest.mark.parametrize("kind", list(PROMPTS))
def test_sam2_prompts_equal_processor_model_and_post_processing(kind, backends, demo_images):
    """Single clicks use the multimask output with the best predicted IoU, as SAM 2 recommends."""
    from transformers import Sam2Processor

    backend = backends["sam2_image"]
    obj, processor_kwargs, multimask = PROMPTS[kind]
    image = demo_images["truck"]
    processor = Sam2Processor(image_processor=_image_processor("Sam2ImageProcessor", backend.transform.spec.height))
    with torch.no_grad():
        (ours,) = backend.segment(image, PromptSet(objects=(obj,)))
        inputs = processor(images=image, return_tensors="pt", **processor_kwargs)
        sizes = inputs.pop("original_sizes")
        out = backend.head.model(**inputs, multimask_output=multimask)
    masks = processor.post_process_masks(out.pred_masks, sizes)[0][0]
    iou = out.iou_scores[0, 0]
    best = int(iou.argmax())
    agree = (masks[best].numpy() == ours.mask).mean()
    assert agree >= 0.99999, agree  # point order inside the prompt encoder may flip a pixel
    # our score: predicted IoU x object presence (documented in docs/sam.md)
    expected = float(iou[best] * torch.sigmoid(out.object_score_logits[0, 0, 0]))
    assert ours.score == pytest.approx(expected, abs=1e-5)


def test_sam3_concepts_with_box_exemplars_equal_processor_and_detector(checkpoints, demo_images):
    from transformers import AutoTokenizer, Sam3Processor

    backend = create_backend(make_config("sam3", checkpoints, max_objects=1000))
    backend.nms_iou = 1.01  # the processor has no duplicate removal: compare every query
    image = demo_images["dog"]
    height, width = image.shape[:2]
    exemplars = (BoxPrompt(10, 10, 200, 200), BoxPrompt(300, 50, 500, 300, positive=False))
    processor = Sam3Processor(image_processor=_image_processor("Sam3ImageProcessor", backend.transform.spec.height),
                              tokenizer=AutoTokenizer.from_pretrained(checkpoints["sam3_video"]))
    with torch.no_grad():
        ours = backend.segment(image, PromptSet(concepts=(ConceptPrompt("dog", exemplars=exemplars),)))
        plain = backend.segment(image, PromptSet(concepts=(ConceptPrompt("dog"),)))
        inputs = processor(images=image, text="dog", input_boxes=[[[10, 10, 200, 200], [300, 50, 500, 300]]],
                           input_boxes_labels=[[1, 0]], return_tensors="pt")
        inputs.pop("original_sizes")
        out = backend.detector(**inputs)
    reference = processor.post_process_instance_segmentation(out, threshold=0.0, mask_threshold=0.5,
                                                             target_sizes=[(height, width)])[0]
    assert len(ours) == len(reference["scores"]) > 0
    assert {i.label for i in ours} == {"dog"}
    order = torch.argsort(reference["scores"], descending=True).numpy()
    ours = sorted(ours, key=lambda i: -i.score)
    np.testing.assert_allclose([i.score for i in ours], reference["scores"].numpy()[order], atol=1e-6)
    for instance, k in zip(ours, order):
        np.testing.assert_array_equal(instance.mask, reference["masks"][k].numpy().astype(bool))
    # the exemplars reach the detector: the same concept without them scores differently
    plain_scores = np.sort([i.score for i in plain])[::-1]
    assert np.abs(plain_scores - np.array([i.score for i in ours])).max() > 1e-4
