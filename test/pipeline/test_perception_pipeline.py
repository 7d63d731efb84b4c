"""PerceptionPipeline on real KITTI frames, prompt routing, config, pairing buffers, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from samfusion.convert.pointcloud2 import xyz_array
from samfusion.errors import CalibrationError, ConfigError, PromptError
from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
from samfusion.pipeline.evaluation import kitti_point_accuracy, summarize
from samfusion.pipeline.extrinsics import extrinsics_from_flat, load_extrinsics
from samfusion.pipeline.labels import LabelMap
from samfusion.pipeline.perception import PerceptionPipeline, perception_config_from_flat
from samfusion.pipeline.sync import CalibrationStamps, CameraBuffer, CloudSlot, Stamped, nearest_within
from samfusion.segmentation.prompts import BoxPrompt, PromptAction, PromptUpdate


@pytest.fixture(scope="module")
def frame(shared_data):
    return read_kitti_frame(shared_data / "kitti_object", "000001")


def _run(frame, **config):
    pipeline = PerceptionPipeline(perception_config_from_flat(config))
    pipeline.set_camera_model("camera", frame.calib.camera_model)
    pipeline.set_extrinsic("camera", frame.calib.T_cam_from_velo)
    for update in prompts_from_labels(frame.labels):
        pipeline.apply_prompt(update, {"camera": (1242, 375)})
    seg = pipeline.segment("camera", frame.image, stamp=12.5)
    xyz = xyz_array(frame.cloud)
    return pipeline, seg, xyz, pipeline.label_cloud(xyz, [seg])


def test_kitti_frame_labels_and_accuracy(frame):
    pipeline, seg, xyz, labels = _run(frame, cleanup=False)
    assert [(i.instance_id, i.label) for i in seg.instances] == [(1, "Truck"), (2, "Car"), (3, "Cyclist")]
    assert seg.id_image.shape == (375, 1242) and seg.id_image.dtype == np.uint16
    assert seg.stamp == 12.5
    acc = {a.object_id: a for a in kitti_point_accuracy(xyz, labels.instance, frame.labels, frame.calib)}
    assert acc[1].gt_points == 72 and acc[2].gt_points == 9 and acc[3].gt_points == 18
    assert acc[1].recall >= 0.9 and acc[1].precision >= 0.9 and acc[2].recall == 1.0
    # label field: class ids by first appearance; score = the instance's mask score
    assert pipeline.labels.names == ["Truck", "Car", "Cyclist"]
    np.testing.assert_array_equal(np.unique(labels.label[labels.instance == 2]), [2])
    assert set(np.unique(labels.score[labels.instance == 1])) == {seg.instances[0].score}
    assert np.all(labels.camera_index[labels.instance > 0] == 0)
    assert [o.instance_id for o in labels.objects] == [1, 2, 3]
    truck = labels.objects[0]
    assert truck.point_count == int((labels.instance == 1).sum())
    assert 60 < truck.centroid[0] < 67 and abs(truck.centroid[1]) < 2


def test_cleanup_raises_precision_on_kitti(frame):
    *_, xyz, raw = _run(frame, cleanup=False)
    *_, xyz, clean = _run(frame, cleanup=True)
    before = summarize(kitti_point_accuracy(xyz, raw.instance, frame.labels, frame.calib))
    after = summarize(kitti_point_accuracy(xyz, clean.instance, frame.labels, frame.calib))
    assert after["micro_precision"] >= before["micro_precision"]
    np.testing.assert_array_equal(clean.raw_instance, raw.instance)


def test_cloud_without_any_paired_camera_is_returned_unlabeled(frame):
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    xyz = xyz_array(frame.cloud)
    labels = pipeline.label_cloud(xyz, [])
    assert labels.instance.shape == (len(xyz),) and not labels.instance.any() and labels.objects == []
    empty = pipeline.label_cloud(np.zeros((0, 3), np.float32), [])
    assert empty.instance.shape == (0,)


def test_prompt_routing_to_cameras_and_shared_ids():
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    with pytest.raises(PromptError, match="no camera streams"):
        pipeline.apply_prompt(PromptUpdate(PromptAction.CLEAR))
    pipeline.camera("left"), pipeline.camera("right")
    add = PromptUpdate(PromptAction.ADD, label="box", boxes=(BoxPrompt(1, 1, 5, 5),))
    touched = pipeline.apply_prompt(add)
    assert touched == {"left": [1], "right": [1]}  # one id for the object in every camera
    assert pipeline.apply_prompt(PromptUpdate(PromptAction.ADD, target="right", boxes=(BoxPrompt(1, 1, 5, 5),))) \
        == {"right": [2]}
    with pytest.raises(PromptError, match="'front' is not a camera of this node"):
        pipeline.apply_prompt(PromptUpdate(PromptAction.CLEAR, target="front"))
    with pytest.raises(PromptError, match="left: REFINE for unknown object id 2"):
        pipeline.apply_prompt(PromptUpdate(PromptAction.REFINE, object_id=2, target="left",
                                           boxes=(BoxPrompt(1, 1, 5, 5),)))


def test_camera_without_calibration_is_reported():
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    with pytest.raises(CalibrationError, match="camera 'x' has no camera model"):
        pipeline.camera("x").rig()


def test_flat_config_validation():
    cfg = perception_config_from_flat({"backend": "classical", "score_threshold": 0.3, "lost_after": 7,
                                       "class_names": ["Car"], "camera_names": ["ignored"]})
    assert cfg.backend.score_threshold == 0.3 and cfg.tracker.score_threshold == 0.3
    assert cfg.tracker.lost_after == 7 and cfg.class_names == ("Car",)
    with pytest.raises(ConfigError, match="backend 'sam9' is unknown"):
        perception_config_from_flat({"backend": "sam9"})
    with pytest.raises(ConfigError, match="needs a checkpoint"):
        perception_config_from_flat({"backend": "sam2"})
    with pytest.raises(ConfigError, match="device 'gpu0'"):
        perception_config_from_flat({"device": "gpu0"})


def test_label_map_is_stable():
    labels = LabelMap(["Car", "Pedestrian"])
    assert labels.id_for("Truck") == 3 and labels.id_for("Car") == 1 and labels.id_for("") == 0
    assert labels.name_of(3) == "Truck" and labels.name_of(9) == ""


def test_pairing_buffers_keep_newest_and_count_skips():
    buf = CameraBuffer(depth=3)
    for t in (1.0, 2.0, 3.0, 4.0):
        buf.push(Stamped(t, f"img{t}"))
    assert buf.skipped == 1  # 1.0 fell out unprocessed
    newest = buf.take_newest_unprocessed()
    assert newest.stamp == 4.0 and buf.skipped == 3  # 2.0 and 3.0 skipped for the newest
    assert buf.take_newest_unprocessed() is None
    items = [Stamped(1.00, "a"), Stamped(1.04, "b"), Stamped(1.20, "c")]
    assert nearest_within(items, 1.05, 0.05).value == "b"
    assert nearest_within(items, 1.5, 0.05) is None
    slot = CloudSlot()
    first, second = Stamped(1.0, "c1"), Stamped(2.0, "c2")
    slot.put(first)
    slot.put(second)
    assert slot.dropped == 1 and not slot.take(first) and slot.take(second) and slot.peek() is None


def test_calibration_stamped_per_frame_makes_a_newer_frame_wait():
    cal = CalibrationStamps()
    cal.applied("camera_info", "cam", 0.0)  # published once (latched / static): never waits
    cal.image_segmented("cam", 5.0)
    assert cal.behind("cam", 5.0) == []
    cal.applied("camera_info", "cam", 5.0)  # the frame's own CameraInfo: the stream is per frame
    cal.applied("extrinsic", "cam", 0.0)
    cal.image_segmented("cam", 5.0)
    assert cal.behind("cam", 5.0) == [] and cal.behind("cam", 4.0) == []
    assert cal.behind("cam", 6.0) == ["camera_info"]  # frame 6's CameraInfo not applied yet
    assert cal.behind("other", 6.0) == []
    cal.applied("camera_info", "cam", 6.0)
    assert cal.behind("cam", 6.0) == []
    cal.applied("extrinsic", "cam", 6.0)
    cal.image_segmented("cam", 6.0)  # now the extrinsic is per frame too
    assert cal.behind("cam", 7.0) == ["camera_info", "extrinsic"]


def test_extrinsics_from_files_and_parameters(shared_data):
    kitti = load_extrinsics(shared_data / "kitti_object" / "calib" / "000001.txt", "auto", ["cam"])
    point = kitti["cam"].apply(np.array([[10.0, 0.0, 0.0]]))  # 10 m ahead of the velodyne
    assert point[0, 2] == pytest.approx(9.73, abs=0.05)  # ~10 m in front of the camera (z)
    nus = load_extrinsics(shared_data / "nuscenes_mini_sample" / "calib.json", "auto", ["CAM_FRONT"])
    # nuScenes LIDAR_TOP: x right, y forward
    assert nus["CAM_FRONT"].apply(np.array([[0.0, 20.0, 0.0]]))[0, 2] > 15.0
    with pytest.raises(CalibrationError, match="has no camera \\['CAM_TOP'\\]"):
        load_extrinsics(shared_data / "nuscenes_mini_sample" / "calib.json", "auto", ["CAM_TOP"])
    flat = extrinsics_from_flat([1, 2, 3, 0, 0, 0, 1], ["a"])
    np.testing.assert_allclose(flat["a"].apply(np.zeros((1, 3))), [[1, 2, 3]])
    with pytest.raises(CalibrationError, match="expected 7 per camera x 2 cameras"):
        extrinsics_from_flat([0.0] * 7, ["a", "b"])


def test_torch_labeling_backend_gives_the_same_labels(frame):
    *_, xyz, numpy_labels = _run(frame, cleanup=False)
    *_, _, torch_labels = _run(frame, cleanup=False, labeling_backend="torch")
    np.testing.assert_array_equal(torch_labels.instance, numpy_labels.instance)
    with pytest.raises(ConfigError, match="labeling_backend must be 'numpy' or 'torch'"):
        perception_config_from_flat({"labeling_backend": "jax"})
