"""`samfusion process` on bags of the nuScenes keyframe: 6 jpeg cameras + 1 LiDAR, multi-camera labeling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from samfusion.cli import main
from samfusion.convert.image import image_to_numpy
from samfusion.convert.pointcloud2 import cloud_to_structured, xyz_array
from samfusion.offline.nuscenes_sample import object_accuracy, sample_prompts
from samfusion.offline.prompts_file import dump_prompts

from ._bags import read_topic, write_nuscenes_bag
from .conftest import NU_MIN_POINTS

CALIB = "calib.json"


@pytest.fixture(scope="module")
def nu_processed(tmp_path_factory: pytest.TempPathFactory, nu_bags, nu_prompts_file, shared_data) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("nu_out")
    assert main(["process", str(nu_bags["db3"]), "--out", str(out), "--no-progress",
                 "--prompts", str(nu_prompts_file)]) == 0
    assert main(["process", str(nu_bags["mcap"]), "--out", str(out), "--no-progress", "--prompts",
                 str(nu_prompts_file), "--extrinsics", str(shared_data / "nuscenes_mini_sample" / CALIB)]) == 0
    return {"db3": out / "nu_db3_samfusion", "mcap": out / "nu_mcap_samfusion"}


def _cloud(path: Path) -> np.ndarray:
    (_, msg), = read_topic(path, "/points_labeled")
    return cloud_to_structured(msg)


@pytest.mark.parametrize("storage", ["db3", "mcap"])
def test_labels_equal_the_pipeline_and_objects_received_labels(storage, nu_processed, nu_reference, nu_sample) -> None:
    cloud = _cloud(nu_processed[storage])
    ref, xyz = nu_reference
    np.testing.assert_array_equal(cloud["instance"], ref.instance)
    np.testing.assert_array_equal(cloud["label"], ref.label)
    np.testing.assert_array_equal(cloud["score"], ref.score)
    prompted = {p.object_id for p in sample_prompts(nu_sample, NU_MIN_POINTS)}
    rows = object_accuracy(nu_sample, xyz_array(cloud), cloud["instance"], prompted)
    assert len(prompted) == 17 and all(r.in_view for r in rows)
    received = [r.object_id for r in rows if r.received_label]
    # 16 of the 17 prompted objects get at least one point inside their own box (barrier 64's
    # mask lands on what is behind it: 13 points labeled, none in its box)
    assert len(received) == 16 and 64 not in received
    assert (by_id := {r.object_id: r for r in rows})[64].labeled_points > 0
    assert not [r.object_id for r in rows if r.received_label and not r.prompted]
    # the truck seen by CAM_FRONT and CAM_FRONT_LEFT, and a barrier seen by two cameras
    assert (by_id[19].gt_points, by_id[19].labeled_points, by_id[19].true_positives) == (479, 168, 168)
    assert (by_id[8].labeled_points, by_id[8].true_positives) == (22, 22)
    assert by_id[42].precision > 0.9
    micro = sum(r.true_positives for r in rows) / sum(r.labeled_points for r in rows)
    assert micro > 0.8


def test_one_object_is_labeled_from_two_cameras(nu_reference) -> None:
    ref, _ = nu_reference
    cams = np.array(ref.cameras)
    truck = ref.instance == 19
    by_camera = dict(zip(*np.unique(cams[ref.camera_index[truck]], return_counts=True)))
    assert set(by_camera) == {"CAM_FRONT", "CAM_FRONT_LEFT"} and min(by_camera.values()) >= 10, by_camera
    barrier = ref.instance == 69
    assert set(cams[ref.camera_index[barrier]]) == {"CAM_FRONT", "CAM_FRONT_RIGHT"}


def test_segmentation_results_share_object_ids_across_cameras(nu_processed, nu_sample) -> None:
    path = nu_processed["db3"]
    results = {}
    for camera in nu_sample.rigs:
        (_, seg), = read_topic(path, f"/{camera}/segmentation")
        results[camera] = seg
        ids = image_to_numpy(seg.instance_ids)
        assert ids.shape == (900, 1600)
        assert {o.id for o in seg.objects} == {p.object_id for p in sample_prompts(nu_sample, NU_MIN_POINTS)
                                              if p.camera == camera}
    front = {o.id: o for o in results["CAM_FRONT"].objects}
    left = {o.id: o for o in results["CAM_FRONT_LEFT"].objects}
    # one object, one id, one 3D part in both cameras' results
    assert front[19].point_count == left[19].point_count == 168
    assert front[19].label == "truck"
    assert (front[19].box_size.x, front[19].box_center.position.x) == (left[19].box_size.x,
                                                                        left[19].box_center.position.x)


def test_camera_off_by_more_than_max_skew_is_not_paired(tmp_path: Path, nu_sample, capsys) -> None:
    """CAM_FRONT stamped 1 s late: it is left out of the pairing; --time-offset brings it back."""
    late = tmp_path / "late"
    write_nuscenes_bag(late, nu_sample, "db3", camera_offsets={"CAM_FRONT": 1.0})
    # the truck (CAM_FRONT and CAM_FRONT_LEFT) and two objects only CAM_FRONT sees
    prompts = [p for p in sample_prompts(nu_sample) if p.object_id in (19, 45, 66)]
    assert sorted((p.object_id, p.camera) for p in prompts) == [
        (19, "CAM_FRONT"), (19, "CAM_FRONT_LEFT"), (45, "CAM_FRONT"), (66, "CAM_FRONT")]
    prompts_file = tmp_path / "prompts.yaml"
    prompts_file.write_text(yaml.safe_dump(dump_prompts(prompts)))
    base = ["process", str(late), "--no-progress", "--prompts", str(prompts_file), "--json"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    report = _report(capsys)
    assert (report["clouds"], report["clouds_labeled"], report["clouds_unlabeled"]) == (1, 1, 0)
    assert report["unpaired"] == {"CAM_FRONT": 1}
    cloud = _cloud(tmp_path / "a" / "late_samfusion")
    counts = {i: int(np.count_nonzero(cloud["instance"] == i)) for i in (19, 45, 66)}
    assert counts[45] == counts[66] == 0 and counts[19] > 0  # the truck still comes from CAM_FRONT_LEFT
    assert main(base + ["--out", str(tmp_path / "b"), "--time-offset", "CAM_FRONT=1.0"]) == 0
    assert _report(capsys)["unpaired"] == {}
    fixed = _cloud(tmp_path / "b" / "late_samfusion")
    fixed_counts = {i: int(np.count_nonzero(fixed["instance"] == i)) for i in (19, 45, 66)}
    assert fixed_counts[45] > 0 and fixed_counts[66] > 0 and fixed_counts[19] > counts[19]
    # the same offset from a node parameter file (time_offsets_s in camera_names order)
    names = sorted(nu_sample.rigs)
    params = tmp_path / "perception.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "camera_names": names, "time_offsets_s": [1.0 if n == "CAM_FRONT" else 0.0 for n in names]}}}))
    assert main(base + ["--out", str(tmp_path / "c"), "--config", str(params)]) == 0
    assert _report(capsys)["unpaired"] == {}
    assert _cloud(tmp_path / "c" / "late_samfusion").tobytes() == fixed.tobytes()


def test_cloud_without_any_image_in_range_is_written_unlabeled(tmp_path: Path, nu_sample, capsys) -> None:
    early = tmp_path / "early"
    write_nuscenes_bag(early, nu_sample, "mcap", camera_offsets={c: -0.5 for c in nu_sample.rigs})
    assert main(["process", str(early), "--no-progress", "--out", str(tmp_path), "--json", "--max-skew", "0.1",
                 "--box", "CAM_FRONT:500,300,900,700:thing"]) == 0
    report = _report(capsys)
    assert (report["clouds"], report["clouds_labeled"], report["clouds_unlabeled"]) == (1, 0, 1)
    assert report["unpaired"] == {c: 1 for c in sorted(nu_sample.rigs)}
    assert report["segmentations_written"] == 6
    cloud = _cloud(tmp_path / "early_samfusion")
    assert cloud.size == 34688 and not np.any(cloud["instance"]) and not np.any(cloud["label"])


def _report(capsys) -> dict:
    import json

    (entry,) = json.loads(capsys.readouterr().out).values()
    return entry


def test_sample_links_every_2d_box_to_one_3d_box(nu_sample) -> None:
    objects = nu_sample.objects
    assert len(objects) == 69 and sum(len(o.boxes_2d) for o in objects) == 84
    assert sum(1 for o in objects if o.boxes_2d) == 68
    assert sum(1 for o in objects if len(o.boxes_2d) == 2) == 16
    truck = objects[18]
    assert (truck.object_id, truck.label, truck.num_lidar_pts) == (19, "truck", 495)
    assert sorted(truck.boxes_2d) == ["CAM_FRONT", "CAM_FRONT_LEFT"]
