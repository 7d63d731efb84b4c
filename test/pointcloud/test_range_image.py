"""Range images: rows from rings / beam angles / fov, z-buffer, RGB view, masks back to points."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samfusion.errors import ConfigError, ConversionError, PromptError
from samfusion.pointcloud.objects3d import points_in_box
from samfusion.pointcloud.range_image import (
    RangeImageConfig,
    RingOrder,
    estimate_beam_altitudes,
    masks_to_points,
    project_box_to_range_image,
    project_to_range_image,
    render_range_image,
    to_rgb,
)

from ._data import load_kitti, load_nuscenes, read_ouster


def _check_zbuffer(ri, n):
    """Every filled cell holds the nearest of its points (lowest index on ties); no point lost."""
    cells = defaultdict(list)
    for i in np.flatnonzero(ri.valid):
        cells[(ri.row[i], ri.col[i])].append(i)
    assert int(ri.filled.sum()) == len(cells)
    for (r, c), members in cells.items():
        best = min(members, key=lambda i: (ri.point_range[i], i))
        assert ri.index[r, c] == best
        assert ri.range[r, c] == ri.point_range[best]
    assert (ri.range[~ri.filled] == 0).all() and (ri.index[~ri.filled] == -1).all()


@settings(max_examples=50, deadline=None)
@given(
    pts=arrays(np.float32, st.tuples(st.integers(1, 200), st.just(3)), elements=st.floats(-20, 20, width=32)),
    height=st.integers(1, 8),
    width=st.integers(1, 16),
)
def test_zbuffer_keeps_the_nearest_point(pts, height, width):
    pts = np.vstack([pts, pts[:5]])  # exact duplicates: the lower index must win
    cfg = RangeImageConfig(height=height, width=width, fov_up_deg=30.0, fov_down_deg=-30.0, min_range_m=0.0)
    ri = render_range_image(pts, None, None, cfg)
    assert ri.range.shape == ri.index.shape == (height, width) and ri.index.dtype == np.int64
    _check_zbuffer(ri, len(pts))


def test_columns_follow_azimuth():
    cfg = RangeImageConfig(height=4, width=360)
    pts = np.array([[10.0, 0, 0], [0, 10.0, 0], [0, -10.0, 0], [-10.0, 0.001, 0], [-10.0, -0.001, 0]])
    _, cols = project_to_range_image(pts, cfg)
    assert cols.tolist() == [180, 90, 270, 0, 359]  # forward centre, left of it, seam behind


def test_linear_fov_rows_put_extreme_beams_on_edge_rows():
    cfg = RangeImageConfig(height=5, width=8, fov_up_deg=2.0, fov_down_deg=-24.8)
    elev = np.radians([2.0, 2.0 - 6.7, -24.8, 10.0, -40.0])
    pts = np.column_stack([10 * np.cos(elev), np.zeros(5), 10 * np.sin(elev)])
    rows, _ = project_to_range_image(pts, cfg)
    assert rows.tolist() == [0, 1, 4, 0, 4]


def test_real_nuscenes_rows_come_from_the_ring_field(shared_data):
    sweep, _, _ = load_nuscenes(shared_data)
    cfg = RangeImageConfig.velodyne_hdl32e()
    ri = render_range_image(sweep[:, :3], sweep[:, 3], sweep[:, 4], cfg)
    ring = sweep[:, 4].astype(int)
    for row in range(32):
        on_row = ri.row == row
        assert on_row.any() and (ring[on_row] == 31 - row).all()  # ring 0 is the lowest beam
    assert int(ri.valid.sum()) == 29492  # 5196 returns closer than 0.5 m (ego vehicle, zeros)
    assert int(ri.filled.sum()) == 26650
    assert ri.has_intensity
    assert np.array_equal(ri.intensity[ri.filled], sweep[ri.index[ri.filled], 3])
    # Ring rows vs elevation rows: the same beam mostly, a few rows off for some points.
    elev_rows, elev_cols = project_to_range_image(sweep[:, :3], cfg)
    valid = ri.valid
    assert np.array_equal(elev_cols[valid], ri.col[valid])
    assert np.mean(elev_rows[valid] == ri.row[valid]) == pytest.approx(0.80, abs=0.01)
    top_down = render_range_image(sweep[:, :3], None, sweep[:, 4],
                                  RangeImageConfig.velodyne_hdl32e(ring_order=RingOrder.TOP_DOWN))
    assert np.array_equal(top_down.row[valid], ring[valid])


def test_ring_errors(shared_data):
    sweep, _, _ = load_nuscenes(shared_data)
    with pytest.raises(ConfigError, match="32 rows|0..31"):
        render_range_image(sweep[:, :3], None, sweep[:, 4], RangeImageConfig(height=16, width=64))
    with pytest.raises(ConversionError, match="whole numbers"):
        render_range_image(np.ones((2, 3)), None, np.array([0.5, 1.0]), RangeImageConfig(height=4, width=8))
    with pytest.raises(ConversionError, match="ring must have shape"):
        render_range_image(np.ones((2, 3)), None, np.array([0]), RangeImageConfig(height=4, width=8))


def test_real_kitti_scan_with_computed_elevation(shared_data):
    scan, *_ = load_kitti(shared_data, "000000")
    cfg = RangeImageConfig.velodyne_hdl64e()
    ri = render_range_image(scan[:, :3], scan[:, 3], None, cfg)
    assert ri.range.shape == (64, 2048)
    assert int(ri.valid.sum()) == len(scan) == 115384
    assert int(ri.filled.sum()) == 88989  # measured: 77% of the points win a cell
    # Rows follow elevation: mean elevation decreases monotonically down the image.
    xyz = scan[:, :3].astype(np.float64)
    elev = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    used = np.unique(ri.row)
    means = np.array([elev[ri.row == r].mean() for r in used])
    assert np.all(np.diff(means) < 0)
    assert used.min() == 0 and used.max() >= 60
    # A linear fov leaves gaps where the HDL-64E's two laser blocks change spacing.
    assert ri.filled.any(axis=1).sum() == 61
    _check_zbuffer(ri, len(scan))


def test_ouster_beam_angles_assign_the_exact_beam(shared_data):
    _, meta = read_ouster(shared_data)
    cfg = RangeImageConfig.from_ouster_metadata(meta)
    assert (cfg.height, cfg.width, cfg.ring_order) == (128, 1024, RingOrder.TOP_DOWN)
    assert cfg.beam_origin_offset_m == pytest.approx(0.015806)
    assert cfg.origin_z_m == pytest.approx(0.03618)
    alt = np.radians(meta["beam_altitude_angles"])
    rng = np.random.default_rng(7)
    beam = np.repeat(np.arange(128), 20)
    az = rng.uniform(-math.pi, math.pi, len(beam))
    r = rng.uniform(0.5, 120.0, len(beam))
    # Points as the Ouster SDK builds them: the beam starts offset n along the azimuth.
    n = cfg.beam_origin_offset_m
    rho = n + r * np.cos(alt[beam])
    pts = np.column_stack([rho * np.cos(az), rho * np.sin(az), cfg.origin_z_m + r * np.sin(alt[beam])])
    rows, _ = project_to_range_image(pts, cfg)
    assert np.array_equal(rows, beam)
    # Ignoring the offsets misassigns near points.
    plain = RangeImageConfig(height=128, width=1024, beam_altitudes_deg=tuple(meta["beam_altitude_angles"]))
    rows_plain, _ = project_to_range_image(pts, plain)
    assert np.any(rows_plain != beam)


def test_real_ouster_map_renders(shared_data):
    points, meta = read_ouster(shared_data)
    ri = render_range_image(points, None, None, RangeImageConfig.from_ouster_metadata(meta))
    assert ri.range.shape == (128, 1024)
    assert int(ri.filled.sum()) == 87082
    assert ri.filled.sum(axis=1).min() == 281  # every beam row holds points
    rgb = to_rgb(ri)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # no intensity: grey


def test_rgb_encoding(shared_data):
    sweep, _, _ = load_nuscenes(shared_data)
    ri = render_range_image(sweep[:, :3], sweep[:, 3], sweep[:, 4], RangeImageConfig.velodyne_hdl32e())
    rgb = to_rgb(ri)
    assert rgb.shape == (32, 1024, 3) and rgb.dtype == np.uint8
    assert (rgb[~ri.filled] == 0).all()
    filled = ri.filled
    order = np.argsort(ri.range[filled], kind="stable")
    green = rgb[..., 1][filled][order].astype(int)
    assert np.all(np.diff(green) <= 0)  # nearer is brighter
    assert green[0] == 255 and green[-1] == 0
    assert (rgb[..., 1] == rgb[..., 2]).all()
    red = rgb[..., 0][filled]
    inten = ri.intensity[filled]
    hi = np.percentile(inten, 99.0)
    assert (red[inten >= hi] == 255).all()
    assert np.corrcoef(red, inten)[0, 1] > 0.8
    empty = render_range_image(np.zeros((0, 3)), None, None, RangeImageConfig(height=2, width=4))
    assert (to_rgb(empty) == 0).all()


def test_box_mask_round_trip_on_real_nuscenes(shared_data):
    sweep, _, _ = load_nuscenes(shared_data)
    cfg = RangeImageConfig.velodyne_hdl32e()
    ri = render_range_image(sweep[:, :3], sweep[:, 3], sweep[:, 4], cfg)
    ids = np.zeros((32, 1024), np.uint16)
    ids[8:20, 400:600] = 7
    in_box = ri.valid & (ri.row >= 8) & (ri.row < 20) & (ri.col >= 400) & (ri.col < 600)
    every = masks_to_points(ri, ids, tolerance_m=math.inf)
    assert every.dtype == np.uint32
    assert np.array_equal(every == 7, in_box) and set(np.unique(every)) == {0, 7}
    # Default tolerance: winners always; a hidden point only when it is on the winner's surface.
    labels = masks_to_points(ri, ids)
    winners = ri.index[ri.filled & (ids == 7)]
    assert (labels[winners] == 7).all()
    losers = np.flatnonzero(in_box & ~np.isin(np.arange(len(sweep)), winners))
    win_range = ri.range[ri.row[losers], ri.col[losers]].astype(np.float64)
    gap = np.abs(ri.point_range[losers] - win_range)
    expected = gap <= cfg.label_tolerance_m + cfg.label_tolerance_rel * win_range
    assert np.array_equal(labels[losers] == 7, expected)
    assert expected.any() and not expected.all()
    assert not (labels[~in_box]).any()


def test_hidden_background_is_not_labelled():
    cfg = RangeImageConfig(height=1, width=4, fov_up_deg=1.0, fov_down_deg=-1.0)
    pts = np.array([[10.0, 0, 0], [20.0, 0, 0], [10.1, 0, 0], [-5.0, 0, 0]])
    ri = render_range_image(pts, None, None, cfg)
    assert ri.index[0, 2] == 0
    ids = np.array([[0, 0, 3, 0]], np.uint16)
    assert masks_to_points(ri, ids).tolist() == [3, 0, 3, 0]
    with pytest.raises(ConversionError, match="shape"):
        masks_to_points(ri, np.zeros((2, 4), np.uint16))
    with pytest.raises(ConversionError, match="integer"):
        masks_to_points(ri, np.zeros((1, 4), np.float32))


def test_out_of_range_points_take_no_cell():
    cfg = RangeImageConfig(height=2, width=4, min_range_m=1.0, max_range_m=50.0)
    pts = np.array([[0.5, 0, 0], [10, 0, 0], [60, 0, 0], [np.nan, 0, 0]])
    ri = render_range_image(pts, np.array([1, 2, 3, 4.0]), None, cfg)
    assert ri.valid.tolist() == [False, True, False, False]
    assert ri.row[0] == ri.col[0] == -1
    assert masks_to_points(ri, np.ones((2, 4), np.uint16)).tolist() == [0, 1, 0, 0]
    rows, cols = project_to_range_image(np.array([[0.0, 0, 0], [np.inf, 0, 0]]), cfg)
    assert rows.tolist() == cols.tolist() == [-1, -1]


def test_3d_box_prompts_cover_their_points(shared_data):
    sweep, _, ann = load_nuscenes(shared_data)
    cfg = RangeImageConfig.velodyne_hdl32e(ring_order="bottom_up")
    ri = render_range_image(sweep[:, :3], None, sweep[:, 4], cfg)
    checked = 0
    for inst in ann["instances"]:
        center, size, yaw = inst["bbox_3d"][:3], inst["bbox_3d"][3:6], inst["bbox_3d"][6]
        inside = points_in_box(sweep[:, :3], center, size, yaw) & ri.valid
        if inside.sum() < 20:
            continue
        x0, y0, x1, y1 = project_box_to_range_image(center, size, yaw, cfg)
        assert 0 <= x0 < x1 <= 1024 and 0 <= y0 < y1 <= 32
        cols, rows = ri.col[inside], ri.row[inside]
        assert ((cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)).all()
        checked += 1
    assert checked == 7


def test_box_prompt_across_the_seam_and_around_the_sensor():
    cfg = RangeImageConfig(height=16, width=360, fov_up_deg=15, fov_down_deg=-15)
    x0, y0, x1, y1 = project_box_to_range_image((-10.0, 0.2, 0.0), (1.0, 2.0, 1.0), 0.0, cfg)
    assert x0 == 0 and 0 < x1 < 10  # centre just left of the seam: clipped there
    x0, _, x1, _ = project_box_to_range_image((-10.0, -0.2, 0.0), (1.0, 2.0, 1.0), 0.0, cfg)
    assert 350 < x0 < x1 == 360
    with pytest.raises(PromptError, match="around the sensor"):
        project_box_to_range_image((0.5, 0.0, 0.0), (4.0, 2.0, 1.0), 0.3, cfg)


def test_config_validation():
    for bad in (
        dict(height=0), dict(fov_up_deg=-30.0), dict(beam_altitudes_deg=(1.0, 2.0)),
        dict(height=2, beam_altitudes_deg=(1.0, 1.0)), dict(min_range_m=-1.0),
        dict(label_tolerance_m=-0.1), dict(ring_order="sideways"),
    ):
        with pytest.raises(ConfigError):
            RangeImageConfig(**bad)
    with pytest.raises(ConfigError, match="Ouster"):
        RangeImageConfig.from_ouster_metadata({"lidar_mode": "1024x10"})
    unsorted = RangeImageConfig(height=3, width=4, beam_altitudes_deg=(-5.0, 5.0, 0.0))
    rows, _ = project_to_range_image(np.array([[10, 0, 0.9], [10, 0, 0.0], [10, 0, -0.9]]), unsorted)
    assert rows.tolist() == [0, 1, 2]  # rows are beams from the highest down, whatever the order given


def test_estimated_beam_altitudes_fill_every_kitti_row(shared_data):
    scan, *_ = load_kitti(shared_data, "000000")
    alt = estimate_beam_altitudes(scan[:, :3], 64)
    assert len(alt) == 64 and all(a > b for a, b in zip(alt, alt[1:]))
    assert alt[0] == pytest.approx(3.74, abs=0.01) and alt[-1] == pytest.approx(-20.97, abs=0.01)
    cfg = RangeImageConfig(height=64, width=2048, beam_altitudes_deg=alt)
    ri = render_range_image(scan[:, :3], scan[:, 3], None, cfg)
    assert ri.filled.any(axis=1).all()  # the linear fov leaves 3 rows empty
    assert int(ri.filled.sum()) == 93471  # vs 88989 with the linear fov


def test_estimated_beam_altitudes_recover_ouster_beams(shared_data):
    _, meta = read_ouster(shared_data)
    truth = np.array(meta["beam_altitude_angles"])
    rng = np.random.default_rng(11)
    beam = np.repeat(np.arange(128), 200)
    alt = np.radians(truth[beam] + rng.normal(0.0, 0.02, len(beam)))
    az = rng.uniform(-math.pi, math.pi, len(beam))
    r = rng.uniform(6.0, 80.0, len(beam))
    pts = np.column_stack([r * np.cos(alt) * np.cos(az), r * np.cos(alt) * np.sin(az), r * np.sin(alt)])
    est = np.array(estimate_beam_altitudes(pts, 128))
    assert np.abs(est - truth).max() < 0.01
    with pytest.raises(ConversionError, match="cannot separate"):
        estimate_beam_altitudes(pts[:10], 128)
