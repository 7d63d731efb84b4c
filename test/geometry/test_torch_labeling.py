"""label_points_multi_torch against the numpy path: real nuScenes / KITTI, distortion, occlusion.

Border rounding (measured on CPU, this file's data): the torch projection selects exactly the
points the numpy path selects, at the same pixels, for pinhole, plumb_bob and
rational_polynomial cameras; equidistant cameras differ in at most one pixel per camera
(float32 ``atan``). Depths differ by at most one ulp for the last two points of a cloud
(``cv2.transform`` computes them in a scalar tail). On a GPU the fused multiply-adds may round
differently; the bound there is the number of points within 1e-3 px of a pixel border.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samfusion.convert.pcd_io import read_kitti_bin
from samfusion.errors import ConfigError, ConversionError
from samfusion.geometry import CameraModel, CameraRig, RigidTransform, project_points, project_to_cameras
from samfusion.geometry.calibration import load_kitti_calib, load_nuscenes_calib
from samfusion.geometry.projection import visible_from_pixels
from samfusion.pointcloud.labeling import CameraView, OcclusionConfig, PointLabels, label_points_multi
from samfusion.pointcloud.labeling_torch import (
    _nearest_surface,
    default_device,
    label_points_multi_torch,
    project_to_cameras_torch,
)

LIDAR_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
FIELDS = ("instance", "score", "visible", "camera_index", "in_view")


# ------------------------------------------------------------------------------ real data
def _nuscenes_views(shared_data: Path, rigs: list[CameraRig] | None = None) -> tuple[np.ndarray, list[CameraView]]:
    """The real sweep and six views whose id images are the annotated 2D boxes (far to near).

    Ids are the running index of each camera's boxes; the views mix the id options: scores
    by box, no scores, an offset, an id_map, and a scores mapping that misses some ids.
    """
    root = shared_data / "nuscenes_mini_sample"
    xyz = np.fromfile(next(root.glob("*LIDAR_TOP*.pcd.bin")), dtype=np.float32).reshape(-1, 5)
    ann = json.loads((root / "annotations.json").read_text())
    rigs = rigs or list(load_nuscenes_calib(root / "calib.json").values())
    views = []
    for c, rig in enumerate(rigs):
        w, h = rig.camera_model.image_size
        sx, sy = w / 1600, h / 900  # binned variants get their boxes scaled
        boxes = ann["cam_instances"][rig.name]
        ids = np.zeros((h, w), dtype=np.uint16)
        for k in sorted(range(len(boxes)), key=lambda k: -boxes[k]["depth"]):
            x1, y1, x2, y2 = boxes[k]["bbox"]
            ids[max(0, int(y1 * sy)) : int(np.ceil(y2 * sy)), max(0, int(x1 * sx)) : int(np.ceil(x2 * sx))] = k + 1
        n = len(boxes)
        options = [
            dict(scores={k + 1: 0.5 + 0.01 * k for k in range(n)}),
            dict(scores=None, id_offset=100),
            dict(scores=None, id_map={k + 1: 200 + k for k in range(n)}),
            dict(scores={k + 1: 0.9 for k in range(0, n, 2)}, id_offset=300),
            dict(scores={k + 1: 1.0 for k in range(n)}, id_offset=400),
            dict(scores=None, id_offset=500),
        ]
        views.append(CameraView(rig, ids, **options[c % len(options)]))
    return xyz, views


def _border_points(xyz: np.ndarray, views: list[CameraView], eps: float = 1e-3) -> list[int]:
    """Per camera: in-image points whose float64 pixel lies within ``eps`` of a pixel border."""
    out = []
    for view in views:
        proj = project_points(xyz, view.transform, view.rig.camera_model)
        frac = np.abs(proj.uv[proj.valid] - np.round(proj.uv[proj.valid]))
        out.append(int((frac < eps).any(axis=1).sum()))
    return out


def _assert_agree(a: PointLabels, b: PointLabels, ncams: int, bound: list[int] | None = None) -> None:
    """Same labels; ``bound`` (per camera) allows border-rounding differences, None = exact."""
    if bound is None:
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
        # depths: exact but for cv2.transform's scalar tail (its length follows the CPU's SIMD
        # width, so a few points at the end may differ by one ulp)
        differ = np.flatnonzero(~((b.depth == a.depth) | (np.isnan(b.depth) & np.isnan(a.depth))))
        assert (differ >= len(a.depth) - 16).all(), differ
        np.testing.assert_allclose(b.depth, a.depth, rtol=2e-7)
        return
    assert np.mean(a.instance == b.instance) >= 0.999
    counts_a = np.bincount(a.camera_index[a.visible], minlength=ncams)
    counts_b = np.bincount(b.camera_index[b.visible], minlength=ncams)
    assert (np.abs(counts_a - counts_b) <= np.asarray(bound)).all(), (counts_a, counts_b, bound)


def test_nuscenes_six_cameras_agree_with_numpy(shared_data: Path) -> None:
    xyz, views = _nuscenes_views(shared_data)
    ref = label_points_multi(xyz, views)
    got = label_points_multi_torch(xyz, views, device="cpu")
    _assert_agree(ref, got, len(views))
    assert got.instance.dtype == np.uint32 and got.camera_index.dtype == np.int16
    assert got.score.dtype == np.float32 and got.depth.dtype == np.float32
    # the data exercises what is compared: every camera wins points, overlaps and occlusion occur
    assert set(np.unique(got.camera_index)) == {-1, 0, 1, 2, 3, 4, 5}
    hits = project_to_cameras(xyz, [v.transform for v in views], [v.rig.camera_model for v in views])
    seen = np.bincount(np.concatenate([h.index for h in hits]), minlength=len(xyz))
    assert int((seen >= 2).sum()) > 100  # points in two images: the overlap rule decides
    assert int((got.in_view & ~got.visible).sum()) >= 10  # hidden by a nearer surface (measured 17)
    assert int(got.labeled.sum()) > 1000
    assert {int(i) // 100 for i in np.unique(got.instance[got.labeled])} >= {0, 1, 2}
    # measured: no point differs on CPU, far under the border-rounding bound
    assert min(_border_points(xyz, views)) > 0


def test_kitti_frames_agree_with_numpy(shared_data: Path) -> None:
    root = shared_data / "kitti_object"
    for stem in ("000000", "000001", "000002"):
        calib = load_kitti_calib(root / "calib" / f"{stem}.txt")
        scan = read_kitti_bin(root / "velodyne" / f"{stem}.bin")
        xyz = np.stack([scan["x"], scan["y"], scan["z"]], axis=1)
        rig = calib.rig(2)
        w, h = rig.camera_model.image_size
        ids = np.zeros((h, w), dtype=np.int32)  # int32 ids are accepted when <= 0xFFFF
        lines = [ln.split() for ln in (root / "label_2" / f"{stem}.txt").read_text().splitlines()]
        objects = [f for f in lines if f[0] != "DontCare"]
        for k in sorted(range(len(objects)), key=lambda k: -float(objects[k][13])):
            x1, y1, x2, y2 = (float(v) for v in objects[k][4:8])
            ids[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))] = k + 1
        views = [CameraView(rig, ids, {k + 1: 0.6 + 0.1 * k for k in range(len(objects))})]
        ref = label_points_multi(xyz, views)
        got = label_points_multi_torch(xyz, views, device="cpu")
        _assert_agree(ref, got, 1)
        assert int(got.labeled.sum()) > 100 and int(got.visible.sum()) > 15000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (torch CPU build)")
def test_nuscenes_agrees_on_cuda(shared_data: Path) -> None:
    xyz, views = _nuscenes_views(shared_data)
    ref = label_points_multi(xyz, views)
    got = label_points_multi_torch(torch.from_numpy(xyz).cuda(), views)
    assert default_device().type == "cuda"
    _assert_agree(ref, got, len(views), bound=_border_points(xyz, views))


# ------------------------------------------------------------------------------ distortion
def _distorted(rig: CameraRig, model: str, d: list[float], binning: int = 0) -> CameraRig:
    cam = replace(rig.camera_model, D=np.array(d), distortion_model=model, binning_x=binning, binning_y=binning)
    return CameraRig(rig.name, cam, rig.T_cam_from_lidar)


def test_distorted_and_binned_cameras_agree_with_numpy(shared_data: Path) -> None:
    rigs = list(load_nuscenes_calib(shared_data / "nuscenes_mini_sample" / "calib.json").values())
    rigs = [
        _distorted(rigs[0], "plumb_bob", [-0.3, 0.1, 1e-3, -5e-4, -0.02]),
        _distorted(rigs[1], "rational_polynomial", [0.5, -0.2, 1e-3, -5e-4, 0.05, 0.8, -0.1, 0.03]),
        rigs[2],
        _distorted(rigs[3], "plumb_bob", [-0.1, 0.02, 0.0, 0.0, 0.0], binning=2),  # 800 x 450
        _distorted(rigs[4], "rational_polynomial", [0.2, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0]),
        replace(rigs[5], camera_model=replace(rigs[5].camera_model, binning_x=2, binning_y=2)),
    ]
    xyz, views = _nuscenes_views(shared_data, rigs)
    assert views[3].id_image.shape == (450, 800)
    _assert_agree(label_points_multi(xyz, views), label_points_multi_torch(xyz, views, device="cpu"), 6)
    # equidistant: float32 atan may differ by one ulp (measured: 0 of ~4,000 points per camera)
    fisheye = [_distorted(r, "equidistant", [-0.02, 0.01, -0.003, 5e-4]) for r in rigs[:3]]
    xyz, views = _nuscenes_views(shared_data, fisheye)
    ref, got = label_points_multi(xyz, views), label_points_multi_torch(xyz, views, device="cpu")
    _assert_agree(ref, got, 3, bound=[1, 1, 1])
    assert int((ref.instance != got.instance).sum()) <= 3


_K = np.array([[800.0, 0.5, 640.0], [0.0, 780.0, 360.0], [0.0, 0.0, 1.0]])
_MODELS = {
    "rational_polynomial": [0.5, -0.2, 1e-3, -5e-4, 0.05, 0.8, -0.1, 0.03],
    "equidistant": [-0.02, 0.01, -0.003, 5e-4],
    "plumb_bob": [-0.3, 0.1, 1e-3, -5e-4, -0.02],
}


@pytest.mark.parametrize("model", sorted(_MODELS))
def test_distortion_matches_camera_model_project(model: str) -> None:
    cam = CameraModel(1280, 720, _K, _MODELS[model], model)
    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-30, 30, (20000, 2)), rng.uniform(-5, 40, 20000)].astype(np.float32)
    proj = project_to_cameras_torch(pts, [RigidTransform(np.eye(4))], [cam], 0.1, device="cpu")
    uv, in_front = cam.project(pts.astype(np.float64), min_depth=0.1)
    with np.errstate(invalid="ignore"):
        inside = in_front & (uv[:, 0] >= 0) & (uv[:, 0] < 1280) & (uv[:, 1] >= 0) & (uv[:, 1] < 720)
    valid = proj.valid[0].numpy()
    np.testing.assert_array_equal(valid, inside)
    assert 4000 < int(valid.sum()) < 8000
    got = np.stack([proj.u[0].numpy(), proj.v[0].numpy()], axis=1)[valid]
    np.testing.assert_allclose(got, uv[valid], rtol=0, atol=5e-4)  # float32 vs float64 (measured 2.5e-4)


def test_points_beyond_the_distortion_fold_are_rejected() -> None:
    cam = CameraModel(1280, 720, _K, _MODELS["plumb_bob"], "plumb_bob")
    rmax = cam.max_normalized_radius
    assert 1.0 < rmax < 2.0
    r = np.linspace(rmax * 1.001, 2.5, 400)
    ang = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    rr, aa = np.meshgrid(r, ang)
    x, y = (rr * np.cos(aa)).ravel(), (rr * np.sin(aa)).ravel()
    k1, k2, p1, p2, k3 = _MODELS["plumb_bob"]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    u, v = 800 * xd + 0.5 * yd + 640, 780 * yd + 360
    folded = (u >= 0) & (u < 1280) & (v >= 0) & (v < 720)
    assert int(folded.sum()) > 50  # without the rejection these would land in the image
    pts = np.stack([x, y, np.ones_like(x)], axis=1)[folded] * 10.0
    proj = project_to_cameras_torch(pts, [RigidTransform(np.eye(4))], [cam], 0.1, device="cpu")
    assert not proj.valid.any()



def test_pixel_borders_follow_the_floor_convention() -> None:
    """u == width or v == height is outside, u == 0 / v == 0 inside (exact binary values)."""
    cam = CameraModel.pinhole(640, 480, 64.0, 64.0, 320.0, 240.0)
    xyz = np.array([[5.0, 0.0, 1.0], [-5.0, 0.0, 1.0], [0.0, 3.75, 1.0], [0.0, -3.75, 1.0],
                    [4.9990234375, 3.7490234375, 1.0]], dtype=np.float32)
    proj = project_to_cameras_torch(xyz, [RigidTransform(np.eye(4))], [cam], 0.1, device="cpu")
    np.testing.assert_array_equal(proj.valid[0].numpy(), [False, True, False, True, True])
    views = [CameraView(CameraRig("cam", cam, RigidTransform(np.eye(4))), np.full((480, 640), 3, np.uint16))]
    got = label_points_multi_torch(xyz, views, occlusion=OcclusionConfig(enabled=False), device="cpu")
    np.testing.assert_array_equal(got.instance, [0, 3, 0, 3, 3])
    _assert_agree(label_points_multi(xyz, views, occlusion=OcclusionConfig(enabled=False)), got, 1)

# ------------------------------------------------------------------------------ occlusion
def _rig(forward: float = 0.0, name: str = "cam") -> CameraRig:
    cam = CameraModel.pinhole(640, 480, 500, 500, 320, 240, frame_id=name)
    t = RigidTransform.from_rotation_translation(LIDAR_TO_OPTICAL, LIDAR_TO_OPTICAL @ [-forward, 0.0, 0.0])
    return CameraRig(name, cam, t)


def _box_and_wall() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.linspace(-1.0, 1.0, 101)
    yy, zz = np.meshgrid(g, g)
    box = np.stack([np.full(yy.size, 5.0), yy.ravel(), zz.ravel()], axis=1)  # 2 m square at 5 m
    yy, zz = np.meshgrid(np.linspace(-10, 10, 201), np.linspace(-5, 5, 101))
    wall = np.stack([np.full(yy.size, 20.0), yy.ravel(), zz.ravel()], axis=1)
    ids = np.zeros((480, 640), dtype=np.uint16)
    ids[139:342, 219:422] = 1  # the box's pixels plus a pixel of margin
    return box, wall, ids


@pytest.mark.parametrize(
    "occlusion",
    [OcclusionConfig(), OcclusionConfig(radius_px=0), OcclusionConfig(radius_px=4, relative_tolerance=0.05),
     OcclusionConfig(enabled=False)],
    ids=["r2", "r0", "r4-relative", "off"],
)
def test_near_box_hides_the_far_wall(occlusion: OcclusionConfig) -> None:
    box, wall, ids = _box_and_wall()
    xyz = np.vstack([box, wall]).astype(np.float32)
    is_box = np.arange(len(xyz)) < len(box)
    views = [CameraView(_rig(), ids, {1: 0.8})]
    got = label_points_multi_torch(xyz, views, occlusion=occlusion, device="cpu")
    _assert_agree(label_points_multi(xyz, views, occlusion=occlusion), got, 1)
    assert (got.instance[is_box] == 1).all() and np.allclose(got.depth[is_box], 5.0)
    shadow = (np.abs(wall[:, 1]) <= 4.0 + 1e-9) & (np.abs(wall[:, 2]) <= 4.0 + 1e-9)  # behind the box
    assert int(shadow.sum()) == 81 * 81
    wall_ids = got.instance[~is_box]
    assert got.in_view[~is_box][shadow].all()
    if occlusion.enabled and occlusion.radius_px > 0:
        assert (wall_ids[shadow] == 0).all() and not got.visible[~is_box][shadow].any()
        assert np.isnan(got.depth[~is_box][shadow]).all()
    elif occlusion.enabled:  # one pixel: most wall pixels hold no box point (2 px apart), so they leak
        assert int(shadow.sum()) // 2 < int((wall_ids[shadow] == 1).sum()) < int(shadow.sum())  # measured 4880
    else:
        assert (wall_ids[shadow] == 1).all()  # the mask bleeds onto the wall
    assert int(got.visible[~is_box].sum()) >= 201 * 101 - 81 * 81 - 1000


def test_separable_pool_equals_square_min_filter_and_numpy_rule() -> None:
    rng = np.random.default_rng(3)
    width, height, cams = 41, 23, 2
    n = 1500
    cam = rng.integers(0, cams, n)
    order = np.argsort(cam, kind="stable")  # hits are camera-major
    cam, u, v = cam[order], rng.integers(0, width, n), rng.integers(3, height, n)
    d = rng.uniform(1, 30, n).astype(np.float32)
    t = {k: torch.from_numpy(np.asarray(a)) for k, a in dict(cam=cam, u=u, v=v, d=d).items()}
    for occ in (OcclusionConfig(radius_px=r, depth_tolerance=tol, relative_tolerance=rel)
                for r in (0, 1, 3, 12) for tol in (0.0, 0.5) for rel in (0.0, 0.1)):
        got = _nearest_surface(t["cam"], t["u"], t["v"], t["d"], cams, width, occ).numpy()
        ref = np.zeros(n, bool)
        for c in range(cams):
            sel = cam == c
            ref[sel] = visible_from_pixels(v[sel] * width + u[sel], d[sel], width, radius_px=occ.radius_px,
                                           depth_tolerance=occ.depth_tolerance,
                                           relative_tolerance=occ.relative_tolerance)
        np.testing.assert_array_equal(got, ref)
        assert 0 < int(got.sum()) < n or occ.radius_px == 0
    zbuf = torch.from_numpy(rng.uniform(1, 9, (2, 1, 23, 41)).astype(np.float32))
    sep = -F.max_pool1d(-zbuf.view(-1, 1, 41), 7, 1, 3).view(2, 23, 41).transpose(1, 2).contiguous()
    sep = -F.max_pool1d(-sep.view(-1, 1, 23), 7, 1, 3).view(2, 41, 23).transpose(1, 2)
    torch.testing.assert_close(sep, -F.max_pool2d(-zbuf, 7, 1, 3)[:, 0], rtol=0, atol=0)


# ------------------------------------------------------------------------------ overlap rule
def _plane(x: float) -> np.ndarray:
    g = np.linspace(-1.0, 1.0, 21)
    yy, zz = np.meshgrid(g, g)
    return np.stack([np.full(yy.size, x), yy.ravel(), zz.ravel()], axis=1).astype(np.float32)


def test_overlap_rule_score_then_depth_then_camera() -> None:
    xyz = _plane(10.0)  # depth 10 in a camera at 0 m, 8 in a camera at 2 m
    full = np.ones((480, 640), dtype=np.uint16)
    cases = [
        ([CameraView(_rig(0.0), full, {1: 0.9}), CameraView(_rig(2.0), full, {1: 0.5}, id_offset=10)], 1, 0),
        ([CameraView(_rig(0.0), full, {1: 0.5}), CameraView(_rig(2.0), full, {1: 0.5}, id_offset=10)], 11, 1),
        ([CameraView(_rig(2.0), full, None), CameraView(_rig(2.0), full, None, id_offset=10)], 1, 0),
        ([CameraView(_rig(0.0), full * 0, None), CameraView(_rig(2.0), full, {1: 0.0}, id_offset=10)], 11, 1),
        ([CameraView(_rig(0.0), full, {1: float("nan")}), CameraView(_rig(2.0), full * 0, None)], 0, 1),
        ([CameraView(_rig(0.0), full, {1: float("-inf")}), CameraView(_rig(2.0), full, {1: float("-inf")},
                                                                         id_map={1: 7})], 7, 1),
    ]
    for views, instance, camera in cases:
        got = label_points_multi_torch(xyz, views, device="cpu")
        _assert_agree(label_points_multi(xyz, views), got, 2)
        assert (got.instance == instance).all() and (got.camera_index == camera).all()



@pytest.mark.parametrize("seed", range(6))
def test_random_scenes_agree_with_numpy(seed: int) -> None:
    """Random rigs, models, sizes, ids, tied scores and occlusion settings: identical labels."""
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(-20, 20, (3000, 2)), rng.uniform(-3, 3, 3000)]
    xyz[::5] = rng.uniform(-4, 4, (600, 3))  # a dense near cluster that hides what is behind it
    views = []
    for c in range(4):
        model = ["none", "plumb_bob", "rational_polynomial", "equidistant"][int(rng.integers(0, 4))]
        d = {"none": [], "plumb_bob": rng.normal(0, 0.05, 5), "equidistant": rng.normal(0, 0.01, 4),
             "rational_polynomial": np.r_[rng.normal(0, 0.05, 5), rng.normal(0, 0.05, 3)]}[model]
        w, h = int(rng.integers(60, 200)), int(rng.integers(40, 150))
        cam = CameraModel.pinhole(w, h, w * 0.6, w * 0.6, w / 2, h / 2)
        cam = replace(cam, D=np.asarray(d, float), distortion_model=model)
        yaw = rng.uniform(-np.pi, np.pi)
        rot = LIDAR_TO_OPTICAL @ np.array([[np.cos(yaw), np.sin(yaw), 0], [-np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        tf = RigidTransform.from_rotation_translation(rot, rng.normal(0, 1, 3))
        ids = rng.integers(0, 6, (h, w)).astype(np.uint16)
        scores = {k: float(rng.choice([0.5, 1.0])) for k in range(1, 6)} if c % 2 else None
        views.append(CameraView(CameraRig(f"c{c}", cam, tf), ids, scores, id_offset=10 * c))
    occ = OcclusionConfig(radius_px=int(rng.integers(0, 4)), depth_tolerance=float(rng.uniform(0, 1)),
                          relative_tolerance=float(rng.choice([0.0, 0.05])))
    ref = label_points_multi(xyz, views, occlusion=occ, min_depth=0.3)
    got = label_points_multi_torch(xyz, views, occlusion=occ, min_depth=0.3, device="cpu")
    _assert_agree(ref, got, len(views))
    assert int(got.labeled.sum()) > 100

# ------------------------------------------------------------------------------ inputs
def test_empty_cloud_and_no_cameras() -> None:
    views = [CameraView(_rig(), np.ones((480, 640), np.uint16))]
    for xyz, cams in ((np.zeros((0, 3), np.float32), views), (torch.zeros(0, 4), views), (_plane(5.0), [])):
        got = label_points_multi_torch(xyz, cams, device="cpu")
        n = len(xyz)
        assert got.instance.shape == (n,) and got.instance.dtype == np.uint32
        assert not got.visible.any() and not got.in_view.any() and (got.camera_index == -1).all()
        assert np.isnan(got.depth).all() and (got.score == 0).all()


def test_nan_and_inf_points_stay_unlabeled() -> None:
    xyz = _plane(5.0).astype(np.float64)
    bad = np.zeros(len(xyz), bool)
    bad[::7] = True
    xyz[bad & (np.arange(len(xyz)) % 2 == 0), 0] = np.nan
    xyz[bad & (np.arange(len(xyz)) % 2 == 1), 1:] = np.inf
    views = [CameraView(_rig(), np.ones((480, 640), np.uint16), {1: 0.7})]
    got = label_points_multi_torch(xyz, views, device="cpu")
    _assert_agree(label_points_multi(xyz, views), got, 1)
    assert not got.in_view[bad].any() and (got.instance[bad] == 0).all()
    assert got.visible[~bad].all() and (got.instance[~bad] == 1).all()
    # a float64 tensor is accepted and rounded like the numpy input
    same = label_points_multi_torch(torch.from_numpy(xyz), views, device="cpu")
    np.testing.assert_array_equal(same.instance, got.instance)


def test_input_errors_are_typed() -> None:
    views = [CameraView(_rig(), np.ones((480, 640), np.uint16))]
    with pytest.raises(ConversionError, match="shape"):
        label_points_multi_torch(np.zeros((5, 2)), views, device="cpu")
    with pytest.raises(ConversionError, match="shape"):
        label_points_multi_torch(torch.zeros(5), views, device="cpu")
    with pytest.raises(ConversionError, match="id image is 320x240"):
        label_points_multi_torch(_plane(5.0), [CameraView(_rig(), np.ones((240, 320), np.uint16))], device="cpu")
    with pytest.raises(ConfigError, match="id_offset"):
        label_points_multi_torch(_plane(5.0), [CameraView(_rig(), views[0].id_image, id_offset=-1)], device="cpu")
    with pytest.raises(ConfigError, match="torch device"):
        label_points_multi_torch(_plane(5.0), views, device="quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            label_points_multi_torch(_plane(5.0), views, device="cuda")
    with pytest.raises(ConfigError, match="transforms"):
        project_to_cameras_torch(_plane(5.0), [], [views[0].rig.camera_model], device="cpu")
