"""label_points / label_points_multi: occlusion, overlap rule, id mapping, real KITTI / nuScenes."""

from __future__ import annotations

import numpy as np
import pytest

from samfusion.errors import ConfigError, ConversionError
from samfusion.geometry import CameraModel, CameraRig, RigidTransform, project_points
from samfusion.pointcloud.labeling import CameraView, OcclusionConfig, label_points, label_points_multi

# LiDAR frame x forward, y left, z up -> camera optical frame z forward, x right, y down
LIDAR_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
CAM = CameraModel.pinhole(640, 480, 500, 500, 320, 240, frame_id="cam")


def _rig(forward: float = 0.0, name: str = "cam") -> CameraRig:
    """A camera at ``forward`` metres along the LiDAR x axis, looking forward."""
    t = RigidTransform.from_rotation_translation(LIDAR_TO_OPTICAL, LIDAR_TO_OPTICAL @ [-forward, 0.0, 0.0])
    return CameraRig(name, CAM, t)


def _plane(x: float, half: float, n: int) -> np.ndarray:
    g = np.linspace(-half, half, n)
    yy, zz = np.meshgrid(g, g)
    return np.stack([np.full(yy.size, x), yy.ravel(), zz.ravel()], axis=1)


def _box_and_wall() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    box = _plane(5.0, 1.0, 101)  # 2 m square at 5 m: pixels 220..420 in u and 140..340 in v
    g_y, g_z = np.linspace(-10, 10, 201), np.linspace(-5, 5, 101)
    yy, zz = np.meshgrid(g_y, g_z)
    wall = np.stack([np.full(yy.size, 20.0), yy.ravel(), zz.ravel()], axis=1)
    ids = np.zeros((480, 640), dtype=np.uint16)
    ids[139:342, 219:422] = 1  # the box's pixels (220..420 x 140..340) plus a pixel of margin
    return box, wall, ids


def test_points_behind_a_near_object_stay_unlabeled() -> None:
    box, wall, ids = _box_and_wall()
    xyz = np.vstack([box, wall]).astype(np.float32)
    is_box = np.arange(len(xyz)) < len(box)
    rig = _rig()
    labels = label_points(xyz, rig.T_cam_from_lidar, CAM, ids, {1: 0.8})
    assert labels.instance.dtype == np.uint32 and labels.score.dtype == np.float32
    # every box point is visible and labeled, at 5 m
    assert labels.visible[is_box].all() and (labels.instance[is_box] == 1).all()
    np.testing.assert_allclose(labels.depth[is_box], 5.0, rtol=1e-6)
    np.testing.assert_allclose(labels.score[is_box], 0.8)
    # wall points whose pixel is inside the mask are hidden by the box
    proj = project_points(wall, rig.T_cam_from_lidar, CAM)
    behind = proj.valid & (ids[np.clip(proj.v, 0, 479), np.clip(proj.u, 0, 639)] == 1)
    shadow = (np.abs(wall[:, 1]) <= 4.0 + 1e-9) & (np.abs(wall[:, 2]) <= 4.0 + 1e-9)  # the box's 8 m shadow
    np.testing.assert_array_equal(behind, shadow)
    assert int(behind.sum()) == 81 * 81
    wall_labels = labels.instance[~is_box]
    assert (wall_labels[behind] == 0).all()
    assert not labels.visible[~is_box][behind].any()
    assert labels.in_view[~is_box][behind].all()
    assert np.isnan(labels.depth[~is_box][behind]).all()
    assert (labels.camera_index[~is_box][behind] == -1).all()
    # wall points away from the box are visible background
    far = proj.valid & ((proj.u < 215) | (proj.u > 425) | (proj.v < 135) | (proj.v > 345))
    assert labels.visible[~is_box][far].all() and (wall_labels[far] == 0).all()
    assert (labels.score[~is_box] == 0).all()
    # without the occlusion rule the mask bleeds onto the wall behind the box
    bleed = label_points(xyz, rig.T_cam_from_lidar, CAM, ids, {1: 0.8}, OcclusionConfig(enabled=False))
    assert (bleed.instance[~is_box][behind] == 1).all()


def _overlap_scene() -> tuple[np.ndarray, np.ndarray]:
    plane = _plane(10.0, 1.0, 21)  # seen by a camera at 0 m (depth 10) and at 2 m (depth 8)
    # behind the camera at 2 m: only the camera at 0 m sees them, up-left of the plane's pixels
    near = np.array([[1.5, y, z] for y in (0.6, 0.7) for z in (0.6, 0.7)])
    return np.vstack([plane, near]), np.arange(len(plane) + len(near)) < len(plane)


def _full(value: int) -> np.ndarray:
    return np.full((480, 640), value, dtype=np.uint16)


def test_overlap_highest_score_wins() -> None:
    xyz, on_plane = _overlap_scene()
    views = [
        CameraView(_rig(0.0, "a"), _full(1), {1: 0.6}),
        CameraView(_rig(2.0, "b"), _full(1), {1: 0.9}, id_offset=100),
    ]
    labels = label_points_multi(xyz, views)
    assert (labels.camera_index[on_plane] == 1).all()
    assert (labels.instance[on_plane] == 101).all()
    np.testing.assert_allclose(labels.score[on_plane], 0.9)
    np.testing.assert_allclose(labels.depth[on_plane], 8.0, rtol=1e-6)
    # points behind camera b come from camera a
    assert (labels.camera_index[~on_plane] == 0).all() and (labels.instance[~on_plane] == 1).all()
    np.testing.assert_allclose(labels.depth[~on_plane], 1.5, rtol=1e-6)
    # the higher score wins even when it is the farther camera
    swapped = label_points_multi(
        xyz, [CameraView(_rig(0.0), _full(1), {1: 0.95}), CameraView(_rig(2.0), _full(1), {1: 0.9})]
    )
    assert (swapped.camera_index[on_plane] == 0).all()
    np.testing.assert_allclose(swapped.depth[on_plane], 10.0, rtol=1e-6)


@pytest.mark.parametrize("order", [(0.0, 2.0), (2.0, 0.0)])
def test_overlap_equal_scores_nearest_camera_wins(order: tuple[float, float]) -> None:
    xyz, on_plane = _overlap_scene()
    views = [(_rig(order[i]), _full(i + 1), {i + 1: 0.7}) for i in range(2)]  # plain tuples are accepted
    labels = label_points_multi(xyz, views)
    closer = order.index(2.0)
    assert (labels.camera_index[on_plane] == closer).all()
    assert (labels.instance[on_plane] == closer + 1).all()
    np.testing.assert_allclose(labels.depth[on_plane], 8.0, rtol=1e-6)


def test_overlap_labeled_view_beats_background_and_ties_keep_first_camera() -> None:
    xyz, on_plane = _overlap_scene()
    labels = label_points_multi(xyz, [(_rig(0.0), _full(3), {3: 0.3}), (_rig(2.0), _full(0), None)])
    assert (labels.camera_index[on_plane] == 0).all() and (labels.instance[on_plane] == 3).all()
    same = label_points_multi(xyz, [(_rig(0.0), _full(4), None), (_rig(0.0), _full(5), None)])
    assert (same.instance == 4).all() and (same.camera_index == 0).all()
    np.testing.assert_allclose(same.score, 1.0)  # no scores given: labeled pixels score 1


def test_id_map_and_missing_scores() -> None:
    xyz, on_plane = _overlap_scene()
    ids = _full(0)
    ids[:, :320] = 1  # left half of the image
    ids[:, 320:] = 2
    view = CameraView(_rig(0.0), ids, {1: 0.5}, id_map={1: 70000})
    labels = label_points_multi(xyz, [view])
    left = labels.visible & (xyz[:, 1] > 0)  # +y (LiDAR left) is image left
    right = labels.visible & (xyz[:, 1] < 0)
    assert left.any() and right.any()
    assert (labels.instance[left] == 70000).all() and (labels.instance[right] == 0).all()  # 2 is unmapped
    np.testing.assert_allclose(labels.score[left], 0.5)
    assert (labels.score[right] == 0).all()  # id 2 has no score


def test_motion_correction_moves_the_camera() -> None:
    xyz, on_plane = _overlap_scene()
    ego_moved = RigidTransform.from_translation_rpy([-2.0, 0.0, 0.0], [0.0, 0.0, 0.0])  # drove 2 m forward
    corrected = label_points_multi(xyz, [CameraView(_rig(0.0), _full(1), None, motion=ego_moved)])
    reference = label_points_multi(xyz, [CameraView(_rig(2.0), _full(1), None)])
    for name in ("instance", "visible", "camera_index", "in_view"):
        np.testing.assert_array_equal(getattr(corrected, name), getattr(reference, name))
    np.testing.assert_allclose(corrected.depth[on_plane], 8.0, rtol=1e-6)


def test_input_errors_name_the_camera() -> None:
    xyz, _ = _overlap_scene()
    small = np.zeros((240, 320), dtype=np.uint16)
    with pytest.raises(ConversionError, match=r"camera 0 \('a'\): id image is 320x240 but the camera model publishes 640x480"):
        label_points_multi(xyz, [(_rig(name="a"), small, None)])
    with pytest.raises(ConversionError, match="2-D integer"):
        label_points_multi(xyz, [(_rig(), np.zeros((480, 640), np.float32), None)])
    with pytest.raises(ConversionError, match=r"ids must be in 0\.\.65535"):
        label_points_multi(xyz, [(_rig(), np.full((480, 640), 70000, np.int32), None)])
    with pytest.raises(ConfigError, match="scores keys must be instance ids"):
        label_points_multi(xyz, [(_rig(), _full(1), {-3: 0.5})])
    with pytest.raises(ConfigError, match="expected a CameraView"):
        label_points_multi(xyz, ["front"])  # type: ignore[list-item]


def _inside_kitti_box(rect: np.ndarray, obj: dict, margin: float = 0.1) -> np.ndarray:
    h, w, l = obj["hwl"]
    d = rect - np.array(obj["xyz"])
    c, s = np.cos(obj["ry"]), np.sin(obj["ry"])
    x_local = c * d[:, 0] - s * d[:, 2]
    z_local = s * d[:, 0] + c * d[:, 2]
    return (
        (np.abs(x_local) <= l / 2 + margin) & (np.abs(z_local) <= w / 2 + margin)
        & (d[:, 1] <= margin) & (d[:, 1] >= -h - margin)
    )


def test_kitti_boxes_label_their_points_and_occlusion_cuts_bleed(kitti_frames) -> None:
    """Paint the annotated 2D boxes as masks: points in each 3D box get its id; occlusion removes
    background points behind the objects (2D boxes are rectangles, so they bleed)."""
    in_box_total = in_box_labeled = 0
    outside = {True: 0, False: 0}
    for frame in kitti_frames.values():
        calib = frame.calib
        objs = [o for o in frame.labels if o["type"] != "DontCare"]
        w, h = calib.image_size
        ids = np.zeros((h, w), dtype=np.uint16)
        for i in sorted(range(len(objs)), key=lambda i: -objs[i]["xyz"][2]):  # nearer boxes on top
            x1, y1, x2, y2 = objs[i]["box2d"]
            ids[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = i + 1
        rect = calib.T_cam_from_velo_for(0).apply(frame.points[:, :3].astype(np.float64))
        for occluding in (True, False):
            labels = label_points(
                frame.points, calib.T_cam_from_velo, calib.camera_model, ids, None, OcclusionConfig(enabled=occluding)
            )
            for i, obj in enumerate(objs):
                inside = _inside_kitti_box(rect, obj)
                mine = labels.instance == i + 1
                outside[occluding] += int((mine & ~inside).sum())
                if occluding:
                    in_box_total += int(inside.sum())
                    in_box_labeled += int((mine & inside).sum())
    assert in_box_total > 2000
    assert in_box_labeled >= 0.93 * in_box_total  # measured 2093 / 2221
    assert outside[True] < 0.9 * outside[False]  # measured 1497 vs 1806 bleed points


def test_nuscenes_six_cameras_label_box_points(nuscenes_rigs, nuscenes_points, nuscenes_annotations) -> None:
    """Masks from mmdet3d's per-camera 2D boxes, ids mapped to the global box index."""
    boxes = np.array([inst["bbox_3d"] for inst in nuscenes_annotations["instances"]])
    truth = np.zeros(len(nuscenes_points), dtype=np.int64)
    for j, b in enumerate(boxes):
        d = nuscenes_points[:, :3] - b[:3]
        c, s = np.cos(b[6]), np.sin(b[6])
        inside = (np.abs(c * d[:, 0] + s * d[:, 1]) <= b[3] / 2) & (np.abs(-s * d[:, 0] + c * d[:, 1]) <= b[4] / 2)
        truth[inside & (np.abs(d[:, 2]) <= b[5] / 2)] = j + 1
    views = []
    for name, rig in nuscenes_rigs.items():
        centres = project_points(boxes[:, :3], rig.T_cam_from_lidar, rig.camera_model)
        cam_insts = nuscenes_annotations["cam_instances"][name]
        ids = np.zeros((900, 1600), dtype=np.uint16)
        id_map = {}
        for k in sorted(range(len(cam_insts)), key=lambda k: -cam_insts[k]["depth"]):
            x1, y1, x2, y2 = cam_insts[k]["bbox"]
            ids[max(0, int(y1)) : int(np.ceil(y2)), max(0, int(x1)) : int(np.ceil(x2))] = k + 1
            dist = np.linalg.norm(np.nan_to_num(centres.uv, nan=1e9) - cam_insts[k]["center_2d"], axis=1)
            id_map[k + 1] = int(np.argmin(dist)) + 1
        views.append(CameraView(rig, ids, None, id_map=id_map))
    labels = label_points_multi(nuscenes_points, views)
    in_box = truth > 0
    assert int(in_box.sum()) == 990
    assert labels.in_view[in_box].all()
    correct = int((labels.labeled & (labels.instance == truth)).sum())
    assert correct >= 0.75 * 990  # measured 792
    assert set(np.unique(labels.camera_index)) == {-1, 0, 1, 2, 3, 4, 5}
