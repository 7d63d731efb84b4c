"""Write real rosbag2 files from the shared KITTI frames and the nuScenes keyframe.

No real bag with sensor data exists here (see ../shared/data/SOURCES.md), so the tests record
the real images and scans in real message types with rosbags, the way a driver would have:
KITTI as sensor_msgs/Image rgb8 + CameraInfo + PointCloud2 (x, y, z, intensity) + sam_fusion
Prompt + /tf_static; nuScenes as 6 CompressedImage (the original jpeg bytes) + 6 CameraInfo + 1
PointCloud2 (x, y, z, intensity, ring). Bag time = header stamp.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from rosbags.rosbag2 import StoragePlugin

from samfusion.geometry.transform import RigidTransform
from samfusion.io.kitti import KITTI_PROMPT_CLASSES, prompts_from_labels, read_kitti_frame
from samfusion.pointcloud.kitti_boxes import kitti_box_to_velo, velo_from_rect
from samfusion.convert.pcd_io import read_nuscenes_bin
from samfusion.offline import bag_messages as bm
from samfusion.offline.bags import (CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD, PROMPT, TF_MESSAGE,
                                    BagWriter, bag_typestore, new_message)
from samfusion.offline.nuscenes_sample import NuscenesSample

STORAGES = {"db3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
KITTI_T0 = 1_300_000_000.0
KITTI_CAMERA = "camera"


def _ns(stamp: float) -> int:
    return int(round(stamp * 1e9))


def write_kitti_bag(path: Path, root: Path, frame_ids: Sequence[str], storage: str = "db3",
                    *, image_offset_s: float = 0.0, period_s: float = 0.1, prompts: bool = True,
                    tf_static: bool = True, click_3d: bool = False) -> list[float]:
    """Frames ``frame_ids`` (one calibration) at ``period_s``; returns the cloud stamps.

    Prompts: CLEAR, then one ADD per label (ids 1.. as prompts_from_labels gives them) with its
    2D box, or with ``click_3d`` a single 3D click at the label's 3D box centre in the
    velodyne frame (the runner projects it into the camera through /tf_static)."""
    store = bag_typestore()
    stamps = []
    with BagWriter(path, STORAGES[storage], store) as out:
        w = out._writer  # the raw rosbags writer: inputs are recorded like a driver would
        conns = {t: w.add_connection(t, m, typestore=store) for t, m in (
            ("/camera/image_raw", IMAGE), ("/camera/camera_info", CAMERA_INFO),
            ("/velodyne_points", POINT_CLOUD), ("/prompts", PROMPT), ("/tf_static", TF_MESSAGE))}
        frames = [read_kitti_frame(root, f) for f in frame_ids]
        if tf_static:
            msg = bm.tf_message(store, [("camera_2", "velodyne", frames[0].calib.T_cam_from_velo)], KITTI_T0)
            w.write(conns["/tf_static"], _ns(KITTI_T0 - 1.0), store.serialize_cdr(msg, TF_MESSAGE))
        for k, frame in enumerate(frames):
            stamp = KITTI_T0 + k * period_s
            stamps.append(stamp)
            cam_stamp = stamp + image_offset_s
            if prompts:
                t_velo = velo_from_rect(frame.calib.R0_rect, frame.calib.Tr_velo_to_cam)
                kept = [lab for lab in frame.labels if lab.type in KITTI_PROMPT_CLASSES]
                for j, update in enumerate(prompts_from_labels(frame.labels, target=KITTI_CAMERA)):
                    hdr = bm.header(store, stamp - 0.02, "camera_2")
                    msg = bm.prompt_message(store, update, hdr)
                    if click_3d and update.boxes:
                        centre, _, _ = kitti_box_to_velo(kept[update.object_id - 1], t_velo)
                        msg = bm.prompt_message(store, replace(update, boxes=()), bm.header(store, stamp - 0.02, "velodyne"),
                                                np.asarray([centre]), [True])
                    w.write(conns["/prompts"], _ns(stamp - 0.02) + j, store.serialize_cdr(msg, PROMPT))
            model = frame.calib.camera_model
            info = bm.camera_info_message(store, model, bm.header(store, cam_stamp, "camera_2"))
            w.write(conns["/camera/camera_info"], _ns(cam_stamp) - 1, store.serialize_cdr(info, CAMERA_INFO))
            img = bm.image_message(store, frame.image, "rgb8", bm.header(store, cam_stamp, "camera_2"))
            w.write(conns["/camera/image_raw"], _ns(cam_stamp), store.serialize_cdr(img, IMAGE))
            cloud = bm.cloud_message(store, frame.cloud, bm.header(store, stamp, "velodyne"))
            w.write(conns["/velodyne_points"], _ns(stamp) + 1, store.serialize_cdr(cloud, POINT_CLOUD))
    return stamps


def write_nuscenes_bag(path: Path, sample: NuscenesSample, storage: str = "db3",
                       *, camera_offsets: Mapping[str, float] | None = None, tf_static: bool = True) -> None:
    """The keyframe: camera stamps as recorded (+ ``camera_offsets``), the LiDAR sweep once,
    and /tf_static with each camera's optical frame as a child of LIDAR_TOP."""
    store = bag_typestore()
    offsets = camera_offsets or {}
    with BagWriter(path, STORAGES[storage], store) as out:
        w = out._writer
        if tf_static:
            tf_conn = w.add_connection("/tf_static", TF_MESSAGE, typestore=store)
            edges = [("LIDAR_TOP", c, r.T_cam_from_lidar.inverse()) for c, r in sorted(sample.rigs.items())]
            msg = bm.tf_message(store, edges, sample.lidar_stamp)
            w.write(tf_conn, _ns(sample.lidar_stamp - 1.0), store.serialize_cdr(msg, TF_MESSAGE))
        for camera, rig in sorted(sample.rigs.items()):
            stamp = sample.camera_stamps[camera] + offsets.get(camera, 0.0)
            img_conn = w.add_connection(f"/{camera}/image_raw/compressed", COMPRESSED_IMAGE, typestore=store)
            info_conn = w.add_connection(f"/{camera}/camera_info", CAMERA_INFO, typestore=store)
            info = bm.camera_info_message(store, rig.camera_model, bm.header(store, stamp, camera))
            w.write(info_conn, _ns(stamp) - 1, store.serialize_cdr(info, CAMERA_INFO))
            jpeg = np.frombuffer(sample.images[camera].read_bytes(), dtype=np.uint8)
            msg = new_message(store, COMPRESSED_IMAGE, header=bm.header(store, stamp, camera), format="jpeg",
                              data=jpeg)
            w.write(img_conn, _ns(stamp), store.serialize_cdr(msg, COMPRESSED_IMAGE))
        cloud_conn = w.add_connection("/LIDAR_TOP/points", POINT_CLOUD, typestore=store)
        cloud = bm.cloud_message(store, read_nuscenes_bin(sample.cloud_path),
                                 bm.header(store, sample.lidar_stamp, "LIDAR_TOP"))
        w.write(cloud_conn, _ns(sample.lidar_stamp), store.serialize_cdr(cloud, POINT_CLOUD))


def read_topic(path: Path, topic: str) -> list[tuple[int, object]]:
    """(bag time, decoded message) of every message on ``topic`` of a bag."""
    from samfusion.offline.bags import BagReader

    with BagReader(path) as reader:
        msgtype = reader.topic_types[topic]
        return [(t, reader.deserialize(raw, msgtype)) for _, t, raw in reader.messages([topic])]


def nuscenes_extrinsics(sample: NuscenesSample) -> dict[str, RigidTransform]:
    return {c: r.T_cam_from_lidar for c, r in sample.rigs.items()}
