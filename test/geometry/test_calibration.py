"""Calibration loaders on the real KITTI, nuScenes and OpenCalib files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from samfusion.errors import CalibrationError
from samfusion.geometry import (
    RigidTransform,
    image_size_of,
    load_kitti_calib,
    load_nuscenes_calib,
    load_opencalib,
    project_points,
    rig_from_parameters,
)


def _kitti_formula(calib, xyz: np.ndarray, p: np.ndarray) -> np.ndarray:
    """P @ R0_rect @ Tr_velo_to_cam @ [x y z 1], straight from the file's matrices (homogeneous)."""
    r0 = np.eye(4)
    r0[:3, :3] = calib.R0_rect
    tr = np.vstack([calib.Tr_velo_to_cam, [0, 0, 0, 1]])
    hom = np.hstack([xyz.astype(np.float64), np.ones((len(xyz), 1))])
    return (p @ r0 @ tr @ hom.T).T


@pytest.mark.parametrize("stem", ["000000", "000001", "000002"])
@pytest.mark.parametrize("camera", [2, 3])
def test_kitti_projection_equals_p_r0_tr(kitti_frames, stem: str, camera: int) -> None:
    frame = kitti_frames[stem]
    calib = frame.calib
    xyz = frame.points[:, :3]
    hom = _kitti_formula(calib, xyz, calib.projection(camera))
    if camera == 2:
        cam, tf = calib.camera_model, calib.T_cam_from_velo
    else:
        cam, tf = calib.camera_model_for(camera), calib.T_cam_from_velo_for(camera)
    proj = project_points(xyz, tf, cam)
    front = hom[:, 2] > 0.1
    np.testing.assert_array_equal(proj.valid & ~front, False)
    np.testing.assert_allclose(proj.depth, hom[:, 2], rtol=1e-6, atol=1e-5)  # float32 depth
    err = np.abs(proj.uv[front] - hom[front, :2] / hom[front, 2:])
    assert err.max() < 1e-6


def test_kitti_frame_000001_points_in_image(kitti_frames) -> None:
    frame = kitti_frames["000001"]
    calib = frame.calib
    assert calib.image_size == (1242, 375)  # read from image_2/000001.png
    proj = project_points(frame.points[:, :3], calib.T_cam_from_velo, calib.camera_model)
    hom = _kitti_formula(calib, frame.points[:, :3], calib.P2)
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = hom[:, 0] / hom[:, 2], hom[:, 1] / hom[:, 2]
    direct = (hom[:, 2] > 0.1) & (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    assert int(proj.valid.sum()) == 18630
    assert int(direct.sum()) == 18630
    np.testing.assert_array_equal(proj.valid, direct)
    np.testing.assert_array_equal(proj.u[direct], np.floor(u[direct]).astype(np.int32))
    np.testing.assert_array_equal(proj.v[direct], np.floor(v[direct]).astype(np.int32))


def test_kitti_image_size_differs_per_frame(kitti_frames) -> None:
    assert kitti_frames["000000"].calib.image_size == (1224, 370)
    assert kitti_frames["000000"].calib.camera_model.image_size == (1224, 370)


def test_kitti_labelled_objects_project_into_their_2d_boxes(kitti_frames) -> None:
    """Hand-picked points: each labelled object's 3D centre lands inside its annotated 2D box."""
    checked = 0
    for frame in kitti_frames.values():
        calib = frame.calib
        rect_from_velo = calib.T_cam_from_velo_for(0)  # P0 has no offset: the rectified frame
        for obj in frame.labels:
            if obj["type"] == "DontCare":
                continue
            h = obj["hwl"][0]
            centre_rect = np.array([obj["xyz"]]) - [0.0, h / 2, 0.0]  # label y is the bottom, y points down
            centre_velo = rect_from_velo.inverse().apply(centre_rect)
            proj = project_points(centre_velo, calib.T_cam_from_velo, calib.camera_model)
            x1, y1, x2, y2 = obj["box2d"]
            assert proj.valid[0], obj
            assert x1 <= proj.uv[0, 0] <= x2 and y1 <= proj.uv[0, 1] <= y2, (obj, proj.uv[0])
            checked += 1
    assert checked == 6  # 1 + 3 + 2 objects that are not DontCare


def test_kitti_pedestrian_000000_pixel(kitti_frames) -> None:
    calib = kitti_frames["000000"].calib
    centre_rect = np.array([[1.84, 1.47 - 1.89 / 2, 8.41]])
    velo = calib.T_cam_from_velo_for(0).inverse().apply(centre_rect)
    proj = project_points(velo, calib.T_cam_from_velo, calib.camera_model)
    # P2 applied by hand to the rectified point
    p = calib.P2 @ np.append(centre_rect[0], 1.0)
    np.testing.assert_allclose(proj.uv[0], p[:2] / p[2], atol=1e-9)
    assert (proj.u[0], proj.v[0]) == (int(p[0] / p[2]), int(p[1] / p[2]))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calib.txt"
    path.write_text(text)
    return path


def test_kitti_bad_files_name_file_and_key(kitti_frames, tmp_path: Path) -> None:
    good = kitti_frames["000001"].calib.path.read_text().splitlines()
    no_p2 = _write(tmp_path, "\n".join(line for line in good if not line.startswith("P2:")))
    with pytest.raises(CalibrationError, match=rf"{no_p2}: missing key 'P2'"):
        load_kitti_calib(no_p2, image_size=(1242, 375))
    short = _write(tmp_path, "\n".join(line.rsplit(" ", 1)[0] if line.startswith("R0_rect") else line for line in good))
    with pytest.raises(CalibrationError, match="key 'R0_rect' has 8 values, expected 9"):
        load_kitti_calib(short, image_size=(1242, 375))
    junk = _write(tmp_path, "P0: 1 2 x\n")
    with pytest.raises(CalibrationError, match="key 'P0'"):
        load_kitti_calib(junk, image_size=(1242, 375))
    with pytest.raises(CalibrationError, match="pass image_size"):
        load_kitti_calib(_write(tmp_path, "\n".join(good)))


def _ego_to_lidar(nuscenes_dir: Path) -> RigidTransform:
    tree = json.loads((nuscenes_dir / "calib.json").read_text())
    return RigidTransform.from_matrix(tree["lidar"]["lidar2ego"]).inverse()


def test_nuscenes_six_cameras_load(nuscenes_rigs, nuscenes_dir: Path) -> None:
    assert sorted(nuscenes_rigs) == sorted(
        ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    )
    tree = json.loads((nuscenes_dir / "calib.json").read_text())
    for name, rig in nuscenes_rigs.items():
        assert rig.camera_model.image_size == (1600, 900) and rig.camera_model.frame_id == name
        np.testing.assert_array_equal(rig.camera_model.K, tree["cameras"][name]["cam2img"])
        expected = tree["cameras"][name]["timestamp"] - tree["timestamp"]
        assert rig.time_offset_s == pytest.approx(expected, abs=1e-9)
    assert nuscenes_rigs["CAM_FRONT"].time_offset_s == pytest.approx(1532402927.61246 - 1532402927.647951)


def test_nuscenes_front_point_is_in_front_camera_only(nuscenes_rigs, nuscenes_dir: Path) -> None:
    ahead = _ego_to_lidar(nuscenes_dir).apply(np.array([[20.0, 0.0, 1.5]]))  # 20 m ahead of the car
    seen = {name: bool(project_points(ahead, r.T_cam_from_lidar, r.camera_model).valid[0]) for name, r in nuscenes_rigs.items()}
    assert seen["CAM_FRONT"] and not seen["CAM_BACK"]
    assert sorted(n for n, s in seen.items() if s) == ["CAM_FRONT"]
    behind = _ego_to_lidar(nuscenes_dir).apply(np.array([[-20.0, 0.0, 1.5]]))
    proj = project_points(behind, nuscenes_rigs["CAM_BACK"].T_cam_from_lidar, nuscenes_rigs["CAM_BACK"].camera_model)
    assert proj.valid[0]
    assert abs(proj.uv[0, 0] - nuscenes_rigs["CAM_BACK"].camera_model.K[0, 2]) < 40


def test_nuscenes_box_centres_match_mmdet3d_and_count(nuscenes_rigs, nuscenes_annotations) -> None:
    """The 69 annotated box centres: which camera sees them, checked against mmdet3d's center_2d."""
    centres = np.array([inst["bbox_3d"][:3] for inst in nuscenes_annotations["instances"]])
    assert len(centres) == 69
    seen_any = np.zeros(len(centres), dtype=bool)
    per_camera = {}
    for name, rig in nuscenes_rigs.items():
        proj = project_points(centres, rig.T_cam_from_lidar, rig.camera_model)
        seen_any |= proj.valid
        per_camera[name] = int(proj.valid.sum())
        # every camera instance of mmdet3d: its center_2d / depth is one of our projected centres
        for cam_inst in nuscenes_annotations["cam_instances"][name]:
            dist = np.linalg.norm(np.nan_to_num(proj.uv, nan=1e9) - cam_inst["center_2d"], axis=1)
            j = int(np.argmin(dist))
            assert dist[j] < 1e-3
            assert proj.depth[j] == pytest.approx(cam_inst["depth"], abs=1e-4)
    assert per_camera == {
        "CAM_FRONT": 47, "CAM_FRONT_RIGHT": 16, "CAM_FRONT_LEFT": 1, "CAM_BACK": 10, "CAM_BACK_LEFT": 2, "CAM_BACK_RIGHT": 4,
    }
    assert int(seen_any.sum()) == 69


def test_nuscenes_bad_file(tmp_path: Path, nuscenes_dir: Path) -> None:
    tree = json.loads((nuscenes_dir / "calib.json").read_text())
    del tree["cameras"]["CAM_BACK"]["lidar2cam"]
    path = tmp_path / "calib.json"
    path.write_text(json.dumps(tree))
    with pytest.raises(CalibrationError, match=rf"{path}: missing key 'cameras.CAM_BACK.lidar2cam'"):
        load_nuscenes_calib(path, image_size=(1600, 900))
    tree["cameras"]["CAM_BACK"]["lidar2cam"] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    path.write_text(json.dumps(tree))
    with pytest.raises(CalibrationError, match=r"key 'cameras.CAM_BACK.lidar2cam' has shape \(3, 3\), expected \(4, 4\)"):
        load_nuscenes_calib(path, image_size=(1600, 900))
    with pytest.raises(CalibrationError, match="pass image_size"):
        load_nuscenes_calib(path)


def test_opencalib_points_in_image(opencalib_rig, opencalib_points, opencalib_dir: Path) -> None:
    assert image_size_of(opencalib_dir / "0.png") == (1920, 1200)
    cam = opencalib_rig.camera_model
    assert cam.distortion_model == "plumb_bob" and cam.D.tolist()[4] == 0.0
    proj = project_points(opencalib_points[:, :3], opencalib_rig.T_cam_from_lidar, cam)
    assert int(proj.valid.sum()) == 9962  # "about 9.7k" per SOURCES.md
    pts_cam = opencalib_rig.T_cam_from_lidar.apply(opencalib_points[:, :3])
    front = pts_cam[:, 2] > 0.1
    ref, _ = cv2.projectPoints(pts_cam[front].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), cam.K, cam.D)
    ref = ref.reshape(-1, 2)
    inside = (ref[:, 0] >= 0) & (ref[:, 0] < 1920) & (ref[:, 1] >= 0) & (ref[:, 1] < 1200)
    assert int(inside.sum()) == 9962
    np.testing.assert_allclose(proj.uv[front][inside], ref[inside], atol=1e-6)


def test_opencalib_bad_file(tmp_path: Path, opencalib_dir: Path) -> None:
    tree = json.loads((opencalib_dir / "center_camera-intrinsic.json").read_text())
    tree["center_camera-intrinsic"]["param"]["cam_dist"]["data"] = [[0.1, 0.2, 0.3]]
    bad = tmp_path / "intrinsic.json"
    bad.write_text(json.dumps(tree))
    extr = opencalib_dir / "top_center_lidar-to-center_camera-extrinsic.json"
    with pytest.raises(CalibrationError, match=rf"{bad}: key 'cam_dist.data' has 3 coefficients"):
        load_opencalib(bad, extr, (1920, 1200))
    del tree["center_camera-intrinsic"]["param"]["cam_K"]
    bad.write_text(json.dumps(tree))
    with pytest.raises(CalibrationError, match="missing key 'cam_K'"):
        load_opencalib(bad, extr, (1920, 1200))


def test_rig_from_parameters_reproduces_a_loaded_rig(nuscenes_rigs, nuscenes_points) -> None:
    ref = nuscenes_rigs["CAM_FRONT_LEFT"]
    xyz, quat = ref.T_cam_from_lidar.to_translation_quaternion()
    rig = rig_from_parameters(
        "front_left", ref.camera_model.K.reshape(-1).tolist(), [0.0] * 5, "plumb_bob", 1600, 900,
        xyz.tolist(), quat.tolist(),
    )
    assert rig.camera_model.frame_id == "front_left"
    a = project_points(nuscenes_points[:, :3], ref.T_cam_from_lidar, ref.camera_model)
    b = project_points(nuscenes_points[:, :3], rig.T_cam_from_lidar, rig.camera_model)
    assert a.valid.sum() > 1000
    np.testing.assert_array_equal(a.valid, b.valid)
    # the file rotation is orthonormal to ~5e-8 only; the quaternion is exactly a rotation
    np.testing.assert_allclose(a.uv[a.valid], b.uv[b.valid], atol=1e-3)
    with pytest.raises(CalibrationError, match="camera 'front_left' parameters: .*unknown distortion model 'kb4'"):
        rig_from_parameters("front_left", np.eye(3), [], "kb4", 640, 480, [0, 0, 0], [0, 0, 0, 1])
