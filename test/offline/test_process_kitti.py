"""`samfusion process` on bags recorded from the real KITTI frames, and on the KITTI folder itself."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from samfusion.cli import main
from samfusion.convert.image import image_to_numpy
from samfusion.convert.pointcloud2 import cloud_to_structured, xyz_array
from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
from samfusion.offline.bags import BagReader
from samfusion.pipeline.evaluation import kitti_point_accuracy
from samfusion.pipeline.perception import CloudLabeling, PerceptionPipeline, perception_config_from_flat
from samfusion.segmentation.prompts import BoxPrompt

from ._bags import read_topic, write_kitti_bag

FRAMES = {"k0": ["000000"], "k12": ["000001", "000002"]}


def kitti_in_memory(root: Path, frame_ids: list[str]) -> list[CloudLabeling]:
    """The pipeline on the frames without a bag, fed what the bag carries: Box2D holds float32,
    so the label boxes are rounded to float32 as the Prompt messages round them."""
    cv2.setRNGSeed(0)
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    out = []
    for frame_id in frame_ids:
        frame = read_kitti_frame(root, frame_id)
        pipeline.set_camera_model("camera", frame.calib.camera_model)
        pipeline.set_extrinsic("camera", frame.calib.T_cam_from_velo)
        for update in prompts_from_labels(frame.labels, target="camera"):
            boxes = tuple(BoxPrompt(*np.float32(b.as_array()).astype(float).tolist(), b.positive) for b in update.boxes)
            pipeline.apply_prompt(replace(update, boxes=boxes))
        seg = pipeline.segment("camera", frame.image)
        out.append(pipeline.label_cloud(xyz_array(frame.cloud), [seg]))
    return out


@pytest.fixture(scope="module")
def kitti_reference(kitti_root: Path) -> dict[str, list[CloudLabeling]]:
    return {name: kitti_in_memory(kitti_root, ids) for name, ids in FRAMES.items()}


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory, kitti_bags: dict[str, Path]) -> dict[str, Path]:
    """One run over two bags: frame 000000 as .db3, frames 000001-000002 as .mcap."""
    out = tmp_path_factory.mktemp("kitti_out")
    assert main(["process", str(kitti_bags["k0_db3"]), str(kitti_bags["k12_mcap"]), "--out", str(out),
                 "--no-progress"]) == 0
    return {"k0": out / "k0_db3_samfusion", "k12": out / "k12_mcap_samfusion"}


def _clouds(path: Path) -> list[np.ndarray]:
    return [cloud_to_structured(m) for _, m in read_topic(path, "/points_labeled")]


@pytest.mark.parametrize("name", ["k0", "k12"])
def test_bag_labels_equal_the_pipeline_in_memory(name: str, processed, kitti_reference, kitti_root) -> None:
    clouds = _clouds(processed[name])
    assert len(clouds) == len(FRAMES[name])
    for frame_id, cloud, ref in zip(FRAMES[name], clouds, kitti_reference[name]):
        np.testing.assert_array_equal(cloud["instance"], ref.instance)
        np.testing.assert_array_equal(cloud["label"], ref.label)
        np.testing.assert_array_equal(cloud["score"], ref.score)
        frame = read_kitti_frame(kitti_root, frame_id)
        assert cloud["x"].tobytes() == frame.cloud["x"].tobytes()
        # per object: points labeled, and every prompted object with points in its 3D box got some
        acc = kitti_point_accuracy(xyz_array(frame.cloud), cloud["instance"], frame.labels, frame.calib)
        counts = {a.object_id: a.labeled_points for a in acc}
        assert counts == {a.object_id: int(np.count_nonzero(ref.instance == a.object_id)) for a in acc}
        assert all(a.true_positives > 0 for a in acc if a.gt_points >= 5), acc


def test_bag_output_keeps_inputs_and_adds_results(processed, kitti_bags) -> None:
    with BagReader(kitti_bags["k12_mcap"]) as src:
        originals = {(c.topic, t, bytes(d)) for c, t, d in src.messages()}
        input_topics, input_storage = list(src.topic_types), src.storage
    with BagReader(processed["k12"]) as out:
        assert out.storage == input_storage
        counts = {c.topic: c.msgcount for c in out.connections}
        copied = {(c.topic, t, bytes(d)) for c, t, d in out.messages(input_topics)}
    assert copied == originals
    assert {t: counts[t] for t in ("/camera/segmentation", "/camera/overlay", "/points_labeled", "/objects")} == \
        {"/camera/segmentation": 2, "/camera/overlay": 2, "/points_labeled": 2, "/objects": 2}
    clouds = _clouds(processed["k12"])
    results = read_topic(processed["k12"], "/camera/segmentation")
    markers = read_topic(processed["k12"], "/objects")
    images = read_topic(processed["k12"], "/camera/image_raw")
    for (t_seg, seg), (t_img, img), cloud, (_, mk) in zip(results, images, clouds, markers):
        assert t_seg == t_img and seg.header.stamp == img.header.stamp and seg.source == "camera"
        ids = image_to_numpy(seg.instance_ids)
        assert ids.shape == (img.height, img.width)
        for obj in seg.objects:
            assert obj.pixel_area == int(np.count_nonzero(ids == obj.id))
            assert obj.point_count == int(np.count_nonzero(cloud["instance"] == obj.id))
        with_points = [o for o in seg.objects if o.point_count]
        assert len(mk.markers) == 1 + 3 * len(with_points)
    (_, overlay), = read_topic(processed["k0"], "/camera/overlay")
    assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 370, 1224)


def test_extrinsics_file_instead_of_tf_static(tmp_path: Path, kitti_root: Path, kitti_reference) -> None:
    bag = tmp_path / "no_tf"
    write_kitti_bag(bag, kitti_root, FRAMES["k12"], "db3", tf_static=False)
    out = tmp_path / "out"
    # without any extrinsic the clouds are still written, unlabeled, and the run says so (exit 1)
    assert main(["process", str(bag), "--out", str(out), "--no-progress", "--json"]) == 1
    unlabeled = _clouds(out / "no_tf_samfusion")
    assert len(unlabeled) == 2 and not any(np.any(c["instance"]) for c in unlabeled)
    assert main(["process", str(bag), "--out", str(out), "--no-progress",
                 "--extrinsics", str(kitti_root / "calib" / "000001.txt")]) == 0
    for cloud, ref in zip(_clouds(out / "no_tf_samfusion"), kitti_reference["k12"]):
        np.testing.assert_array_equal(cloud["instance"], ref.instance)


def test_kitti_folder_input_matches_samfusion_kitti(tmp_path: Path, kitti_root: Path) -> None:
    from samfusion.offline.kitti_cli import evaluate_kitti

    assert main(["process", str(kitti_root), "--label-prompts", "--out", str(tmp_path), "--no-progress"]) == 0
    out = tmp_path / "kitti_object_samfusion"
    summary = json.loads((out / "summary.json").read_text())
    assert [summary[k] for k in ("images", "images_segmented", "clouds", "clouds_labeled", "clouds_unlabeled")] == \
        [3, 3, 3, 3, 0]
    cv2.setRNGSeed(0)
    rows, totals = evaluate_kitti(kitti_root, {})
    assert [(r["frame"], r["object_id"], r["labeled_points"], r["true_positives"]) for r in summary["objects"]] == \
        [(r["frame"], r["object_id"], r["labeled_points"], r["true_positives"]) for r in rows]
    assert summary["accuracy"]["micro_precision"] == pytest.approx(totals["micro_precision"])
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == ["000000", "000001", "000002"]
    for line in lines:
        ids = cv2.imread(str(out / f"{line['frame']}_ids.png"), cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint16
        assert {o["id"]: o["pixel_area"] for o in line["objects"]} == \
            {o["id"]: int(np.count_nonzero(ids == o["id"])) for o in line["objects"]}
        labeled = {r["object_id"]: r["labeled_points"] for r in rows if r["frame"] == line["frame"]}
        assert {o["id"]: o.get("point_count", 0) for o in line["objects"]} == labeled
        assert (out / f"{line['frame']}_overlay.png").is_file() and (out / f"{line['frame']}_labeled.pcd").is_file()


def test_rerun_replaces_and_resume_skips(tmp_path: Path, kitti_bags: dict[str, Path], capsys) -> None:
    args = ["process", str(kitti_bags["k0_mcap"]), "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = tmp_path / "k0_mcap_samfusion"
    first = (out / "k0_mcap_samfusion.mcap").stat()
    first_cloud = _clouds(out)[0]
    capsys.readouterr()
    assert main(args + ["--resume", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {str(kitti_bags["k0_mcap"]): {"output": str(out), "skipped": True}}
    assert (out / "k0_mcap_samfusion.mcap").stat().st_mtime_ns == first.st_mtime_ns
    assert main(args) == 0  # no --resume: processed again, the finished output replaced
    second = (out / "k0_mcap_samfusion.mcap").stat()
    assert second.st_ino != first.st_ino  # a new file took the old one's place
    assert _clouds(out)[0].tobytes() == first_cloud.tobytes()  # same seed, same result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k0_mcap_samfusion"]


def test_3d_click_prompts_from_the_bag_are_projected(tmp_path: Path, kitti_root: Path, capsys) -> None:
    """Prompt messages holding one 3D click (velodyne frame) per object instead of a 2D box."""
    bag = tmp_path / "clicks"
    write_kitti_bag(bag, kitti_root, FRAMES["k12"], "mcap", click_3d=True)
    assert main(["process", str(bag), "--out", str(tmp_path), "--no-progress", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out).values()
    assert report["prompts_applied"] == 7 and "bad_prompts" not in report
    results = [seg for _, seg in read_topic(tmp_path / "clicks_samfusion", "/camera/segmentation")]
    assert [sorted((o.id, o.label) for o in seg.objects) for seg in results] == [
        [(1, "Truck"), (2, "Car"), (3, "Cyclist")], [(1, "Misc"), (2, "Car")]]
    clouds = _clouds(tmp_path / "clicks_samfusion")
    frame = read_kitti_frame(kitti_root, "000002")
    acc = {a.label: a for a in kitti_point_accuracy(xyz_array(frame.cloud), clouds[1]["instance"], frame.labels,
                                                    frame.calib)}
    # a click at the box centre segments the object: most of what is labeled lies in its box
    assert acc["Misc"].true_positives > 100 and acc["Misc"].precision > 0.8
