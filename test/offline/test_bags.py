"""Bag reading / writing: our types registered, round trips byte for byte, topic selection."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samfusion.convert.compressed import compressed_to_rgb
from samfusion.convert.image import image_to_numpy
from samfusion.convert.pcd_io import read_nuscenes_bin
from samfusion.convert.pointcloud2 import cloud_to_structured
from samfusion.errors import ConfigError
from samfusion.geometry.camera_info import camera_info_to_model
from samfusion.geometry.transform import RigidTransform
from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
from samfusion.offline import bag_messages as bm
from samfusion.offline.bags import (CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD, PROMPT, BagReader,
                                    BagWriter, CameraTopics, bag_typestore, camera_name_from_topic, find_msg_dir,
                                    header_stamp, new_message, select_topics)
from samfusion.pipeline.perception import PerceptionPipeline, perception_config_from_flat
from samfusion.pointcloud.markers import markers_from_objects
from samfusion.segmentation.prompts import PointPrompt, PromptAction, PromptUpdate

from ._bags import STORAGES, read_topic


def test_our_types_are_registered_from_the_msg_files() -> None:
    store = bag_typestore()
    for path in sorted(find_msg_dir().glob("*.msg")):
        declared = [line.split()[1] for line in path.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#") and "=" not in line.split("#")[0]]
        _, fields = store.fielddefs[f"sam_fusion/msg/{path.stem}"]
        assert [name for name, _ in fields] == declared, path.name
    consts = dict((n, v) for n, _, v in store.fielddefs[PROMPT][0])
    assert consts == {"ACTION_ADD": 0, "ACTION_REFINE": 1, "ACTION_REMOVE": 2, "ACTION_CLEAR": 3,
                      "ACTION_SEGMENT_ALL": 4}


def test_new_message_defaults_and_unknown_fields() -> None:
    store = bag_typestore()
    info = new_message(store, CAMERA_INFO)
    assert info.k.shape == (9,) and info.d.shape == (0,) and info.header.frame_id == ""
    with pytest.raises(ConfigError, match="has no field"):
        new_message(store, IMAGE, colour=1)
    with pytest.raises(ConfigError, match="not in the type store"):
        new_message(store, "nope/msg/Nope")


@pytest.mark.parametrize("storage", ["db3", "mcap"])
def test_sensor_messages_round_trip_byte_for_byte(tmp_path: Path, storage: str, kitti_root: Path,
                                                   nu_sample) -> None:
    store = bag_typestore()
    frame = read_kitti_frame(kitti_root, "000001")
    jpeg = nu_sample.images["CAM_FRONT"].read_bytes()
    nu_cloud = read_nuscenes_bin(nu_sample.cloud_path)
    hdr = bm.header(store, 1532402927.6124599, "cam")
    update = PromptUpdate(PromptAction.ADD, object_id=4, label="Car", target="camera",
                          points=(PointPrompt(600.5, 180.0, True), PointPrompt(10.0, 5.0, False)),
                          boxes=prompts_from_labels(frame.labels)[1].boxes)
    msgs = {
        "/image": (IMAGE, bm.image_message(store, frame.image, "rgb8", hdr)),
        "/compressed": (COMPRESSED_IMAGE, new_message(store, COMPRESSED_IMAGE, header=hdr, format="jpeg",
                                                      data=np.frombuffer(jpeg, np.uint8))),
        "/info": (CAMERA_INFO, bm.camera_info_message(store, frame.calib.camera_model, hdr)),
        "/kitti": (POINT_CLOUD, bm.cloud_message(store, frame.cloud, hdr)),
        "/nuscenes": (POINT_CLOUD, bm.cloud_message(store, nu_cloud, hdr)),
        "/prompt": (PROMPT, bm.prompt_message(store, update, hdr, np.array([[1.0, 2.0, 3.0]]), [False])),
    }
    raw = {topic: bytes(store.serialize_cdr(msg, msgtype)) for topic, (msgtype, msg) in msgs.items()}
    path = tmp_path / "bag"
    with BagWriter(path, STORAGES[storage], store) as writer:
        for i, (topic, (msgtype, msg)) in enumerate(msgs.items()):
            writer.write(topic, msgtype, 1000 + i, msg)
    with BagReader(path) as reader:
        assert reader.storage == STORAGES[storage]
        back = {conn.topic: (t, bytes(data)) for conn, t, data in reader.messages()}
        decoded = {topic: reader.deserialize(data, msgs[topic][0]) for topic, (_, data) in back.items()}
    assert {t: d for t, (_, d) in back.items()} == raw
    assert [back[t][0] for t in msgs] == [1000 + i for i in range(len(msgs))]
    assert header_stamp(raw["/image"]) == pytest.approx(1532402927.6124599, abs=1e-9)
    np.testing.assert_array_equal(image_to_numpy(decoded["/image"]), frame.image)
    expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(compressed_to_rgb(decoded["/compressed"]), expected)
    model = camera_info_to_model(decoded["/info"])
    np.testing.assert_array_equal(model.K, frame.calib.camera_model.K)
    assert model.image_size == frame.calib.camera_model.image_size
    assert cloud_to_structured(decoded["/kitti"]).tobytes() == frame.cloud.tobytes()
    assert cloud_to_structured(decoded["/nuscenes"]).tobytes() == nu_cloud.tobytes()
    back_update = bm.prompt_from_message(decoded["/prompt"])
    assert back_update.points == update.points  # these values are exact in float32
    # Box2D holds float32: the label file's 599.41 comes back as the nearest float32
    assert back_update.boxes[0].as_array().tolist() == np.float32(update.boxes[0].as_array()).tolist()
    assert (back_update.action, back_update.object_id, back_update.label, back_update.target) == (
        PromptAction.ADD, 4, "Car", "camera")
    pts, positive = bm.points_3d_of(decoded["/prompt"])
    assert pts.tolist() == [[1.0, 2.0, 3.0]] and positive.tolist() == [False]


def test_copy_keeps_definitions_and_bytes_across_storages(tmp_path: Path, kitti_bags) -> None:
    source = kitti_bags["k12_db3"]
    with BagReader(source) as reader, BagWriter(tmp_path / "copy", STORAGES["mcap"], reader.store) as writer:
        writer.copy_connections(reader.connections)
        originals = [(c.topic, t, bytes(d)) for c, t, d in reader.messages() if writer.write_raw(c, t, d)]
        defs = {c.topic: (c.msgtype, c.msgdef.data, c.digest) for c in reader.connections}
    with BagReader(tmp_path / "copy") as copy:
        assert copy.storage == STORAGES["mcap"]
        assert [(c.topic, t, bytes(d)) for c, t, d in copy.messages()] == originals
        assert {c.topic: (c.msgtype, c.msgdef.data, c.digest) for c in copy.connections} == defs
    # 2 images, 2 infos, 2 clouds, prompts (000001: clear + 3 adds, 000002: clear + 2 adds), 1 tf_static
    assert len(originals) == 2 + 2 + 2 + 4 + 3 + 1


@pytest.mark.parametrize("storage", ["db3", "mcap"])
def test_result_messages_round_trip(tmp_path: Path, storage: str, kitti_root: Path) -> None:
    store = bag_typestore()
    frame = read_kitti_frame(kitti_root, "000002")
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    pipeline.set_camera_model("camera", frame.calib.camera_model)
    pipeline.set_extrinsic("camera", frame.calib.T_cam_from_velo)
    for update in prompts_from_labels(frame.labels, target="camera"):
        pipeline.apply_prompt(update)
    seg = pipeline.segment("camera", frame.image)
    from samfusion.convert.pointcloud2 import xyz_array

    labels = pipeline.label_cloud(xyz_array(frame.cloud), [seg])
    hdr = bm.header(store, 5.25, "camera_2")
    cloud = bm.cloud_message(store, frame.cloud, bm.header(store, 5.25, "velodyne"))
    with BagWriter(tmp_path / "res", STORAGES[storage], store) as writer:
        writer.write("/seg", "sam_fusion/msg/SegmentationResult", 1,
                     bm.segmentation_message(store, seg, hdr, "classical", labels.objects))
        writer.write("/pts", POINT_CLOUD, 2, bm.labeled_cloud_message(store, cloud, labels.label, labels.instance,
                                                                      labels.score))
        writer.write("/obj", bm.MARKER_ARRAY, 3,
                     bm.markers_message(store, markers_from_objects(labels.objects), cloud.header))
    (_, result), = read_topic(tmp_path / "res", "/seg")
    np.testing.assert_array_equal(image_to_numpy(result.instance_ids), seg.id_image)
    assert [(o.id, o.label, o.pixel_area) for o in result.objects] == [
        (i.instance_id, i.label, i.area) for i in sorted(seg.instances, key=lambda i: i.instance_id)]
    by_id = {o.instance_id: o for o in labels.objects}
    for o in result.objects:
        assert o.point_count == by_id[o.id].point_count == int(np.count_nonzero(labels.instance == o.id))
        assert (o.box_size.x, o.box_size.y, o.box_size.z) == pytest.approx(tuple(by_id[o.id].size))
    (_, pts), = read_topic(tmp_path / "res", "/pts")
    arr = cloud_to_structured(pts)
    assert arr.dtype.names == ("x", "y", "z", "intensity", "label", "instance", "score")
    for name in ("x", "y", "z", "intensity"):
        assert arr[name].tobytes() == frame.cloud[name].tobytes()
    np.testing.assert_array_equal(arr["instance"], labels.instance)
    (_, markers), = read_topic(tmp_path / "res", "/obj")
    assert markers.markers[0].action == 3 and len(markers.markers) == 1 + 3 * len(labels.objects)
    assert {m.text for m in markers.markers if m.type == 9} == {s.text for s in markers_from_objects(labels.objects)
                                                                if s.text}


def test_topic_detection_and_errors() -> None:
    types = {"/CAM_FRONT/image_raw/compressed": COMPRESSED_IMAGE, "/CAM_FRONT/camera_info": CAMERA_INFO,
             "/CAM_FRONT/image_raw": IMAGE, "/left/image_rect": IMAGE, "/points": POINT_CLOUD,
             "/prompts": PROMPT, "/tf_static": "tf2_msgs/msg/TFMessage"}
    sel = select_topics(types)
    assert sel.cameras == (CameraTopics("CAM_FRONT", "/CAM_FRONT/image_raw", "/CAM_FRONT/camera_info"),
                           CameraTopics("left", "/left/image_rect", None))
    assert (sel.lidar, sel.prompts, sel.tf) == ("/points", ("/prompts",), ("/tf_static",))
    assert camera_name_from_topic("/robot/front/image_raw/compressed") == "robot/front"
    with pytest.raises(ConfigError, match=r"several PointCloud2 topics \['/a', '/points'\]"):
        select_topics({**types, "/a": POINT_CLOUD})
    with pytest.raises(ConfigError, match="has type sensor_msgs/msg/PointCloud2"):
        select_topics(types, cameras=[CameraTopics("x", "/points")])
    with pytest.raises(ConfigError, match="/nope is not in the bag"):
        select_topics(types, lidar="/nope")


def test_static_transform_chain() -> None:
    a = RigidTransform.from_translation_rpy([1.0, 2.0, 0.5], [0.1, -0.2, 1.0])
    b = RigidTransform.from_translation_rpy([-0.3, 0.0, 1.7], [0.0, 0.3, -2.0])
    tf = bm.StaticTransforms()
    tf.add("base", "lidar", a)  # T_base_from_lidar
    tf.add("base", "cam", b)
    found = tf.lookup("cam", "lidar")
    assert found is not None and found.allclose(b.inverse() @ a, atol=1e-12)
    assert tf.lookup("lidar", "lidar").allclose(RigidTransform.identity())
    assert tf.lookup("cam", "elsewhere") is None
