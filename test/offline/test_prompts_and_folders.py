"""Prompts from YAML and the command line, frame ranges, and the plain image-folder input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from samfusion.cli import main
from samfusion.errors import ConfigError
from samfusion.offline.prompts_file import (ScheduledPrompt, dump_prompts, load_prompts_file, parse_box_arg,
                                            parse_concept_arg, parse_point_arg, parse_prompts)
from samfusion.segmentation.prompts import BoxPrompt, PointPrompt

DOC = """
prompts:
  - camera: CAM_FRONT
    id: 7
    label: car
    box: [10, 20, 110, 220.5]
    points: [[50, 60], [5, 6, 0]]
    frames: [3, 9]
  - label: person
    points: [[1.5, 2.5, 1]]
  - camera: CAM_BACK
    concepts: [traffic cone]
    frames: [4]
"""


def test_yaml_prompts_parse_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DOC)
    prompts = load_prompts_file(path)
    assert prompts == [
        ScheduledPrompt("CAM_FRONT", 7, "car", BoxPrompt(10, 20, 110, 220.5),
                        (PointPrompt(50, 60, True), PointPrompt(5, 6, False)), (), 3, 9),
        ScheduledPrompt("", 0, "person", None, (PointPrompt(1.5, 2.5, True),)),
        ScheduledPrompt("CAM_BACK", 0, "", None, (), ("traffic cone",), 4, None),
    ]
    assert parse_prompts(yaml.safe_load(yaml.safe_dump(dump_prompts(prompts)))) == prompts
    assert [p.active(f) for p in prompts[:1] for f in (2, 3, 9, 10)] == [False, True, True, False]


@pytest.mark.parametrize("doc, message", [
    ("[{box: [1, 2, 3]}]", r"prompt 0.box: expected a list of 4 numbers"),
    ("[{box: [5, 2, 3, 4]}]", "is empty"),
    ("[{label: x}]", "needs a box, points or concepts"),
    ("[{box: [1, 2, 3, 4], colour: red}]", r"unknown key\(s\) \['colour'\]"),
    ("[{box: [1, 2, 3, 4], frames: [5, 2]}]", "last frame 2 is before first frame 5"),
    ("[{box: [1, 2, 3, 4], frames: [-1]}]", "frames: expected"),
    ("[{concepts: [car], frames: [0, 5]}]", "cannot end at a frame"),
    ("[{box: [1, 2, 3, 4], id: 70000}]", "integer in 0..65535"),
    ("{prompt: []}", "unknown top-level key"),
    ("[{points: [[1, x]]}]", "expected numbers"),
])
def test_bad_prompt_files_name_the_problem(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(doc)
    with pytest.raises(ConfigError, match=message):
        load_prompts_file(path)


def test_command_line_prompts() -> None:
    assert parse_box_arg("CAM_FRONT:1,2,30,40:car") == ScheduledPrompt("CAM_FRONT", 0, "car", BoxPrompt(1, 2, 30, 40))
    assert parse_box_arg("1,2,30,40") == ScheduledPrompt(box=BoxPrompt(1, 2, 30, 40))
    assert parse_box_arg("1,2,30,40:truck").label == "truck"
    assert parse_point_arg("left:5,6,0").points == (PointPrompt(5, 6, False),)
    assert parse_point_arg("left:5,6,0").camera == "left"
    assert parse_concept_arg("CAM_BACK:traffic cone") == ScheduledPrompt("CAM_BACK", 0, "traffic cone",
                                                                         concepts=("traffic cone",))
    for bad in ("1,2,3", "a:b:1,2,3,4:c:d", "3,4,1,2"):
        with pytest.raises(ConfigError):
            parse_box_arg(bad)
    with pytest.raises(ConfigError):
        parse_concept_arg("CAM:")


@pytest.fixture()
def bedroom(tmp_path: Path, shared_data: Path) -> Path:
    """The first five frames of the SAM 2 bedroom video as a plain image folder."""
    folder = tmp_path / "bedroom"
    folder.mkdir()
    for i in range(5):
        shutil.copy(shared_data / "sam_demo" / "videos" / "bedroom" / f"{i:05d}.jpg", folder)
    return folder


def test_image_folder_with_a_frame_range(tmp_path: Path, bedroom: Path) -> None:
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"prompts": [
        {"id": 3, "label": "bed", "box": [0, 250, 600, 540], "frames": [1, 3]},
        {"label": "child", "box": [560, 60, 760, 420]},
    ]}))
    out = tmp_path / "out"
    assert main(["process", str(bedroom), "--prompts", str(prompts), "--out", str(out), "--no-progress"]) == 0
    result = out / "bedroom_samfusion"
    lines = [json.loads(line) for line in (result / "results.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == [f"{i:05d}.jpg" for i in range(5)]
    ids_per_frame = [sorted(o["id"] for o in line["objects"]) for line in lines]
    child = {o["id"] for line in lines for o in line["objects"] if o["label"] == "child"}
    assert len(child) == 1 and 3 not in child  # one fresh id kept over all frames
    (child_id,) = child
    assert ids_per_frame == [[child_id], sorted([3, child_id]), sorted([3, child_id]), sorted([3, child_id]),
                             [child_id]]
    for i, line in enumerate(lines):
        ids = cv2.imread(str(result / f"{i:05d}_ids.png"), cv2.IMREAD_UNCHANGED)
        assert ids.shape == (540, 960) and ids.dtype == np.uint16
        for obj in line["objects"]:
            x0, y0, x1, y1 = obj["box"]
            mask = ids == obj["id"]
            assert obj["pixel_area"] == int(mask.sum()) > 1000
            assert mask[y0:y1, x0:x1].sum() == mask.sum()
        overlay = cv2.imread(str(result / f"{i:05d}_overlay.png"))
        original = cv2.imread(str(bedroom / f"{i:05d}.jpg"))
        assert overlay.shape == original.shape and np.any(overlay != original)
    summary = json.loads((result / "summary.json").read_text())
    assert (summary["images"], summary["images_segmented"], summary["prompts_applied"]) == (5, 5, 3)  # child, bed added, bed removed


def test_concepts_need_a_concept_backend(tmp_path: Path, bedroom: Path, capsys) -> None:
    assert main(["process", str(bedroom), "--concept", "bed", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "prompt 0 on camera 'camera' frame 0" in err and "sam3" in err.lower()
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


@pytest.mark.parametrize("content, message", [
    (b"\x00\xff\xfe", r"prompts file .*bad\.yaml is not UTF-8 text \(byte 1: invalid start byte\)"),
    (b"- box: [1, 2\n- label: x\n", r"prompts file .*bad\.yaml is not valid YAML: expected ',' or '\]', but got ':' at line 2, column 8$"),
])
def test_unreadable_prompt_files_give_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_prompts_file(path)
    assert "\n" not in str(info.value)


def test_a_box_that_fits_only_some_images_is_skipped_and_counted(tmp_path: Path, shared_data: Path,
                                                                   capsys) -> None:
    images = shared_data / "sam_demo" / "images"  # dog.jpg and groceries.jpg are 800 wide
    args = ["process", str(images), "--box", "1000,100,1200,300", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "samfusion process: dog.jpg: skipped on this 800x534 frame: object 1: box" in err
    result = tmp_path / "images_samfusion"
    summary = json.loads((result / "summary.json").read_text())
    assert (summary["images"], summary["prompts_skipped"]) == (5, 2)
    lines = {json.loads(line)["image"]: json.loads(line) for line in (result / "results.jsonl").read_text().splitlines()}
    assert [o["id"] for o in lines["cars.jpg"]["objects"]] == [1] and lines["dog.jpg"]["objects"] == []


def test_output_that_cannot_be_created_is_one_line(tmp_path: Path, kitti_root: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["kitti", str(kitti_root), "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.strip() == f"samfusion kitti: File exists: {blocker}"
    assert main(["kitti", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "no complete KITTI frames" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing created for a failed run
