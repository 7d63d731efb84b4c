"""The classical CPU backend on real images: mask pixels, ids, scores and refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samfusion.errors import PromptError
from samfusion.segmentation.classical import ClassicalBackend
from samfusion.segmentation.prompts import BoxPrompt, ConceptPrompt, ObjectPrompt, PointPrompt, PromptSet


def _rgb(path):
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


@pytest.fixture(scope="module")
def truck(shared_data):
    return _rgb(shared_data / "sam_demo" / "images" / "truck.jpg")


def test_box_prompt_segments_the_truck_inside_its_box(truck):
    box = BoxPrompt(75, 275, 1725, 850)
    (inst,) = ClassicalBackend().segment(truck, PromptSet(objects=(ObjectPrompt(7, "truck", boxes=(box,)),)))
    assert inst.instance_id == 7 and inst.label == "truck"
    assert inst.mask.shape == truck.shape[:2] and inst.mask.dtype == bool
    ys, xs = np.nonzero(inst.mask)
    assert xs.min() >= 75 and xs.max() < 1725 and ys.min() >= 275 and ys.max() < 850  # nothing outside
    assert inst.mask[560, 900]  # the truck's side, centre of the box
    assert not inst.mask[300, 100]  # sky / background corner of the box
    assert 0.3 < inst.area / ((1725 - 75) * (850 - 275)) < 0.95
    assert inst.score == pytest.approx(1.0)


def test_positive_and_negative_clicks_are_honoured(truck):
    obj = ObjectPrompt(1, points=(PointPrompt(500, 375, True), PointPrompt(1300, 600, False)))
    (inst,) = ClassicalBackend().segment(truck, PromptSet(objects=(obj,)))
    assert inst.mask[375, 500] and not inst.mask[600, 1300]
    assert inst.score == pytest.approx(1.0)


def test_text_concepts_are_refused_with_the_backend_to_use(truck):
    with pytest.raises(PromptError, match="backend:=sam3"):
        ClassicalBackend().segment(truck, PromptSet(concepts=(ConceptPrompt("truck"),)))


def test_prompts_outside_the_image_are_refused(truck):
    with pytest.raises(PromptError, match="outside the 1800x1200 image"):
        ClassicalBackend().segment(truck, PromptSet(objects=(ObjectPrompt(1, points=(PointPrompt(1900, 10),)),)))
    with pytest.raises(PromptError, match="is empty"):
        ClassicalBackend().segment(truck, PromptSet(objects=(ObjectPrompt(1, boxes=(BoxPrompt(50, 50, 40, 60),)),)))


def test_box_sticking_out_is_clipped_not_refused(truck):
    (inst,) = ClassicalBackend().segment(
        truck, PromptSet(objects=(ObjectPrompt(1, boxes=(BoxPrompt(1500, 900, 2500, 1500),)),)))
    assert inst.mask.shape == (1200, 1800)


def test_several_objects_keep_their_ids(shared_data):
    image = _rgb(shared_data / "kitti_object" / "image_2" / "000001.png")
    prompts = PromptSet(objects=(
        ObjectPrompt(11, "Truck", boxes=(BoxPrompt(599.41, 156.40, 629.75, 189.25),)),
        ObjectPrompt(4, "Car", boxes=(BoxPrompt(387.63, 181.54, 423.81, 203.12),)),
    ))
    out = ClassicalBackend().segment(image, prompts)
    assert [(i.instance_id, i.label) for i in out] == [(11, "Truck"), (4, "Car")]
    assert out[0].mask[172, 614] and out[1].mask[192, 405]  # box centres
    assert not (out[0].mask & out[1].mask).any()
