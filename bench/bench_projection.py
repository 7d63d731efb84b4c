"""Benchmark: project + occlusion + label LiDAR clouds into cameras.

Cases
  (a) a real KITTI HDL-64E scan (frame 000001) into camera 2;
  (b) a synthetic 262,144-point cloud (128 rings x 2048 azimuths on a ground plane, a
      cylinder wall and car-sized obstacles) into the six nuScenes cameras of the real
      calib.json.
For each case: the vectorised pipeline (project_to_cameras alone, label without occlusion,
full label with occlusion), and a naive per-point Python baseline (Python floats: transform,
pinhole, bounds, id lookup; no occlusion, so it is a lower bound) timed on a subset and
scaled to the whole cloud. Prints a Markdown table; ``--append`` adds it to bench/RESULTS.md.

Usage: PYTHONPATH=src python bench/bench_projection.py [--repeats 30] [--append]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from samfusion.geometry import CameraRig, load_kitti_calib, load_nuscenes_calib, project_to_cameras
from samfusion.pointcloud.labeling import CameraView, OcclusionConfig, label_points_multi

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def synthetic_cloud(rings: int = 128, columns: int = 2048, sensor_height: float = 1.84) -> np.ndarray:
    """Range-image-shaped cloud in a z-up LiDAR frame: ground, a 30 m wall, 24 obstacles."""
    elev = np.deg2rad(np.linspace(-30.0, 10.0, rings))[:, None]
    azim = np.linspace(-np.pi, np.pi, columns, endpoint=False)[None, :]
    with np.errstate(divide="ignore"):
        ground = np.where(elev < 0, sensor_height / np.tan(-elev), np.inf)
    rng = np.broadcast_to(np.minimum(ground, 30.0 / np.cos(elev)), (rings, columns)).copy()
    sector = (np.floor((azim + np.pi) / (2 * np.pi) * 48).astype(int) % 2 == 0)[0]  # 24 obstacles
    hit_z = -sensor_height + 1.5  # obstacles 1.5 m tall, 9 m away
    obstacle = 9.0 / np.cos(elev)
    below = (obstacle * np.sin(elev) <= hit_z) & (obstacle * np.sin(elev) >= -sensor_height)
    rng = np.where(sector[None, :] & below, np.minimum(rng, obstacle), rng)
    xy = rng * np.cos(elev)
    pts = np.stack([xy * np.cos(azim), xy * np.sin(azim), rng * np.sin(elev)], axis=-1)
    return pts.reshape(-1, 3).astype(np.float32)


def id_image(width: int, height: int, seed: int) -> tuple[np.ndarray, dict[int, float]]:
    """Ten random rectangles of instance ids with random scores."""
    gen = np.random.default_rng(seed)
    ids = np.zeros((height, width), dtype=np.uint16)
    scores = {}
    for k in range(1, 11):
        x0, y0 = int(gen.integers(0, width - 50)), int(gen.integers(height // 3, height - 50))
        ids[y0 : y0 + int(gen.integers(40, 300)), x0 : x0 + int(gen.integers(40, 400))] = k
        scores[k] = float(gen.uniform(0.3, 1.0))
    return ids, scores


def naive_cameras(views: list[CameraView]) -> list[tuple]:
    """Plain-Python copies of each view's matrices, id image and scores (not timed)."""
    cams = []
    for view in views:
        m = view.rig.T_cam_from_lidar.matrix.tolist()
        k = view.rig.camera_model.image_K.tolist()
        w, h = view.rig.camera_model.image_size
        cams.append((m, k, w, h, view.id_image.tolist(), view.scores or {}, view.id_offset))
    return cams


def naive_label(xyz: np.ndarray, cams: list[tuple]) -> list[int]:
    """Per-point Python loop with Python floats (pinhole only; no occlusion)."""
    out = []
    for x, y, z in xyz.tolist():
        best, best_s, best_d = 0, -1.0, math.inf
        for m, k, w, h, ids, scores, offset in cams:
            zc = m[2][0] * x + m[2][1] * y + m[2][2] * z + m[2][3]
            if zc <= 0.1:
                continue
            xc = m[0][0] * x + m[0][1] * y + m[0][2] * z + m[0][3]
            yc = m[1][0] * x + m[1][1] * y + m[1][2] * z + m[1][3]
            u = k[0][0] * xc / zc + k[0][2]
            v = k[1][1] * yc / zc + k[1][2]
            if 0 <= u < w and 0 <= v < h:
                ident = ids[int(v)][int(u)]
                s = scores.get(ident, 0.0) if ident else 0.0
                if s > best_s or (s == best_s and zc < best_d):
                    best, best_s, best_d = (ident + offset if ident else 0), s, zc
        out.append(best)
    return out


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3, min(samples) * 1e3


def run_case(name: str, xyz: np.ndarray, rigs: list[CameraRig], repeats: int, subset: int) -> list[str]:
    views = []
    for i, rig in enumerate(rigs):
        w, h = rig.camera_model.image_size
        ids, scores = id_image(w, h, seed=i)
        views.append(CameraView(rig, ids, scores, id_offset=1000 * i))
    tfs = [v.rig.T_cam_from_lidar for v in views]
    models = [v.rig.camera_model for v in views]
    n = len(xyz)
    rows = []
    labels = label_points_multi(xyz, views)
    stages = [
        ("project_to_cameras", lambda: project_to_cameras(xyz, tfs, models)),
        ("label, occlusion off", lambda: label_points_multi(xyz, views, occlusion=OcclusionConfig(enabled=False))),
        ("label, occlusion r=2 (full)", lambda: label_points_multi(xyz, views)),
    ]
    results = [(stage, *timed(fn, repeats)) for stage, fn in stages]
    step = max(1, n // subset)
    sub = np.ascontiguousarray(xyz[::step][:subset])
    cams = naive_cameras(views)
    t0 = time.perf_counter()
    naive = np.array(naive_label(sub, cams))
    naive_ms = (time.perf_counter() - t0) / len(sub) * n * 1e3
    plain = label_points_multi(xyz, views, occlusion=OcclusionConfig(enabled=False)).instance[::step][:subset]
    agree = float(np.mean(naive == plain)) * 100
    for stage, med, best in results:
        rows.append(f"| {name} | {n:,} | {len(views)} | {stage} | {med:.2f} | {best:.2f} | {n / med / 1e3:.1f} | |")
    full_med = results[-1][1]
    rows.append(
        f"| {name} | {n:,} | {len(views)} | naive Python loop, no occlusion ({len(sub):,} pts, scaled; "
        f"{agree:.2f}% same ids as 'occlusion off') "
        f"| {naive_ms:.0f} | | {n / naive_ms / 1e3:.2f} | {naive_ms / full_med:.0f}x |"
    )
    rows.append(
        f"| {name} | | | visible {int(labels.visible.sum()):,}, labeled {int(labels.labeled.sum()):,} | | | | |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--subset", type=int, default=20000)
    parser.add_argument("--append", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()

    kitti = load_kitti_calib(DATA / "kitti_object" / "calib" / "000001.txt")
    scan = np.fromfile(DATA / "kitti_object" / "velodyne" / "000001.bin", dtype=np.float32).reshape(-1, 4)
    nus = load_nuscenes_calib(DATA / "nuscenes_mini_sample" / "calib.json")
    cloud = synthetic_cloud()

    lines = [
        "| case | points | cameras | stage | ms / cloud (median) | best ms | M points/s (median) "
        "| full label vs naive |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    lines += run_case("KITTI 000001 -> camera 2", scan[:, :3], [kitti.rig(2)], args.repeats, args.subset)
    lines += run_case("synthetic 128x2048 -> 6 nuScenes cams", cloud, list(nus.values()), args.repeats, args.subset)

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    load = os.getloadavg()[0]
    header = [
        "## bench_projection.py",
        "",
        f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- CPU: {model}, {os.cpu_count()} cores (shared with other jobs)",
        f"- Python {platform.python_version()}, numpy {np.__version__}, OpenCV {cv2.__version__}",
        f"- load average at start: {load:.2f} (the machine is shared; 'best ms' is the least noisy)",
        f"- median and best of {args.repeats} runs per stage; points float32; pinhole cameras",
        "",
    ]
    notes = [
        "",
        "naive = a per-point Python loop with Python floats (transform, pinhole, bounds, id lookup,",
        "score / depth rule; no occlusion, so it is a lower bound on naive cost), run on an evenly",
        f"strided subset of {args.subset:,} points and scaled linearly; the last column compares it to",
        "the full label median.",
    ]
    table = "\n".join(header + lines + notes) + "\n"
    print(table)
    if args.append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n" + table)


if __name__ == "__main__":
    main()
