#!/usr/bin/env python3
"""Benchmark: 3D instance cleanup + objects, and range-image rendering.

Workloads
  * KITTI 000001 with 10 instances: the 10 largest above-ground DBSCAN clusters in camera 2's
    view, each labelled by its 2D bounding box (a box-prompt mask: object + ground/background
    bleed), as the foundation's labelling would paint them.
  * nuScenes sample, six cameras: every annotated box painted through its projected 2D bounds
    (56 instances, 1,817 labelled points).
  * Range images: KITTI 000001 (120,268 points, HDL-64E fov, 64 x 2048) and a synthetic
    spinning cloud of 128 x 2048 = 262,144 points (ring field and computed elevation).

Steps (median and best of --repeat runs):
  cleanup         clean_instances (ground plane + DBSCAN + keep rule), Open3D and numpy backends
  objects         compute_objects + markers_from_objects on the cleaned instances
  render          render_range_image; to_rgb; masks_to_points for a 40 % box mask
Naive baselines in the same run:
  cleanup naive   per instance: Open3D cluster_dbscan(eps 0.5, min 5) on the raw points (no
                  ground removal, no voxel thinning), keep the largest cluster
  render naive    per-point Python loop keeping the nearest point per cell (dict z-buffer), on
                  the first --naive-points points and scaled linearly

Prints a table and appends it to bench/RESULTS.md under '## bench_cleanup'.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from benchlib import cpu_model

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from samfusion.pointcloud.cleanup import CleanupConfig, clean_instances  # noqa: E402
from samfusion.pointcloud.dbscan import dbscan, open3d_available  # noqa: E402
from samfusion.pointcloud.markers import markers_from_objects  # noqa: E402
from samfusion.pointcloud.objects3d import box_corners, compute_objects, points_in_box  # noqa: E402
from samfusion.pointcloud.range_image import (  # noqa: E402
    RangeImageConfig,
    masks_to_points,
    render_range_image,
    to_rgb,
)




def timeit(fn, repeat: int) -> tuple[float, float]:
    """(median, best) milliseconds over ``repeat`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


# ----------------------------------------------------------------------------------------------
# workloads
# ----------------------------------------------------------------------------------------------
def _kitti_calib(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = np.array(v.split(), dtype=np.float64)
    return out


def kitti_ten_instances(data: Path, frame: str = "000001"):
    """(xyz, instance, depth) with 10 box-painted instances around real above-ground clusters."""
    scan = np.fromfile(data / "kitti_object/velodyne" / f"{frame}.bin", np.float32).reshape(-1, 4)
    xyz = scan[:, :3].astype(np.float64)
    cal = _kitti_calib(data / "kitti_object/calib" / f"{frame}.txt")
    r0 = np.eye(4)
    r0[:3, :3] = cal["R0_rect"].reshape(3, 3)
    tr = np.eye(4)
    tr[:3, :] = cal["Tr_velo_to_cam"].reshape(3, 4)
    rect = xyz @ (r0 @ tr)[:3, :3].T + (r0 @ tr)[:3, 3]
    p2 = cal["P2"].reshape(3, 4)
    uvw = rect @ p2[:, :3].T + p2[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    seen = (rect[:, 2] > 1.0) & (u >= 0) & (u < 1242) & (v >= 0) & (v < 375)
    above = seen & (xyz[:, 2] > -1.4)
    idx = np.flatnonzero(above)
    labels = dbscan(xyz[idx], 0.5, 10, "numpy")
    sizes = np.bincount(labels[labels >= 0])
    picks = [k for k in np.argsort(-sizes) if sizes[k] <= 3000][:10]
    instance = np.zeros(len(xyz), np.uint32)
    for rank, k in sorted(enumerate(picks), key=lambda t: -np.median(rect[idx[labels == t[1]], 2])):
        members = idx[labels == k]
        x1, x2 = u[members].min(), u[members].max()
        y1, y2 = v[members].min(), v[members].max()
        box = seen & (u >= x1) & (u <= x2) & (v >= y1) & (v <= y2)
        instance[box] = rank + 1
    depth = np.where(instance > 0, rect[:, 2], np.linalg.norm(xyz, axis=1))
    return xyz, instance, depth, scan


def nuscenes_instances(data: Path):
    base = data / "nuscenes_mini_sample"
    calib = json.loads((base / "calib.json").read_text())
    ann = json.loads((base / "annotations.json").read_text())
    sweep = np.fromfile(base / calib["lidar"]["file"], np.float32).reshape(-1, 5)
    xyz = sweep[:, :3].astype(np.float64)
    instance = np.zeros(len(xyz), np.uint32)
    depth = np.linalg.norm(xyz, axis=1)
    boxes = [b["bbox_3d"] for b in ann["instances"]]
    for cam in calib["cameras"].values():
        l2c, k = np.array(cam["lidar2cam"]), np.array(cam["cam2img"])
        pc = xyz @ l2c[:3, :3].T + l2c[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = (pc @ k.T)[:, 0] / pc[:, 2], (pc @ k.T)[:, 1] / pc[:, 2]
        vis = (pc[:, 2] > 0.5) & (u >= 0) & (u < 1600) & (v >= 0) & (v < 900) & (instance == 0)
        painted = np.zeros(len(xyz), np.uint32)
        order = sorted(range(len(boxes)), key=lambda i: -np.linalg.norm(boxes[i][:3]))
        for i in order:
            corners = box_corners(boxes[i][:3], boxes[i][3:6], boxes[i][6]) @ l2c[:3, :3].T + l2c[:3, 3]
            if (corners[:, 2] < 0.5).any():
                continue
            px = corners @ k.T
            px = px[:, :2] / px[:, 2:]
            (x1, y1), (x2, y2) = px.min(axis=0), px.max(axis=0)
            painted[vis & (u >= x1) & (u <= x2) & (v >= y1) & (v <= y2)] = i + 1
        instance[vis] = painted[vis]
        depth[vis] = pc[vis, 2]
    return xyz, instance, depth, boxes


def synthetic_spin(rows: int = 128, cols: int = 2048, seed: int = 0):
    rng = np.random.default_rng(seed)
    el = np.radians(np.linspace(22.5, -22.5, rows))[:, None]
    az = np.linspace(-math.pi, math.pi, cols, endpoint=False)[None, :]
    r = rng.uniform(1.0, 80.0, (rows, cols))
    xyz = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el) + 0 * az], -1)
    xyz = xyz.reshape(-1, 3).astype(np.float32)
    ring = np.repeat(np.arange(rows)[::-1], cols)  # ring 0 = lowest beam
    return xyz, rng.uniform(0, 255, len(xyz)).astype(np.float32), ring


# ----------------------------------------------------------------------------------------------
# naive baselines
# ----------------------------------------------------------------------------------------------
def naive_cleanup(xyz: np.ndarray, instance: np.ndarray) -> np.ndarray:
    import open3d as o3d  # noqa: PLC0415

    out = np.zeros_like(instance)
    for inst_id in np.unique(instance[instance > 0]):
        members = np.flatnonzero(instance == inst_id)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[members]))
        labels = np.asarray(cloud.cluster_dbscan(0.5, 5, False))
        if (labels >= 0).any():
            out[members[labels == np.bincount(labels[labels >= 0]).argmax()]] = inst_id
    return out


def naive_render(xyz: np.ndarray, cfg: RangeImageConfig, limit: int) -> dict:
    best: dict = {}
    up, span = cfg.fov_up_deg, cfg.fov_up_deg - cfg.fov_down_deg
    for i in range(min(limit, len(xyz))):
        x, y, z = (float(c) for c in xyz[i])
        r = math.sqrt(x * x + y * y + z * z)
        if r < cfg.min_range_m:
            continue
        row = min(max(round((up - math.degrees(math.atan2(z, math.hypot(x, y)))) / span * (cfg.height - 1)), 0), cfg.height - 1)
        col = int((math.pi - math.atan2(y, x)) / (2 * math.pi) * cfg.width) % cfg.width
        if (row, col) not in best or r < best[(row, col)][0]:
            best[(row, col)] = (r, i)
    return best


def precision_recall(xyz, instance, boxes, min_gt: int = 5) -> tuple[float, float]:
    """Micro point precision / recall against ground-truth boxes (id k+1 = boxes[k])."""
    tp = fp = fn = 0
    for k, b in enumerate(boxes):
        gt = points_in_box(xyz, b[:3], b[3:6], b[6])
        if gt.sum() < min_gt:
            continue
        lab = instance == k + 1
        tp, fp, fn = tp + int((gt & lab).sum()), fp + int((lab & ~gt).sum()), fn + int((gt & ~lab).sum())
    return tp / (tp + fp), tp / (tp + fn)


def accuracy_lines(data: Path) -> list[str]:
    xyz, inst, depth, boxes = nuscenes_instances(data)
    results = [("painted (no cleanup)", inst), ("clean_instances", clean_instances(xyz, inst, depth))]
    if open3d_available():
        results.insert(1, ("naive (largest DBSCAN cluster)", naive_cleanup(xyz, inst)))
    lines = ["| nuScenes box-painted labels | point precision | point recall |", "|---|---:|---:|"]
    for name, labels in results:
        p, r = precision_recall(xyz, labels, boxes)
        lines.append(f"| {name} | {p:.3f} | {r:.3f} |")
    return lines


# ----------------------------------------------------------------------------------------------
def bench(args) -> list[tuple]:
    rows = []
    data = args.data
    workloads = [
        ("KITTI 000001, 10 box prompts", *kitti_ten_instances(data)[:3]),
        ("nuScenes, 6 cameras", *nuscenes_instances(data)[:3]),
    ]
    for name, xyz, inst, depth in workloads:
        n_inst = len(np.unique(inst[inst > 0]))
        desc = f"{name} ({n_inst} inst, {int((inst > 0).sum()):,} labelled / {len(xyz):,} pts)"
        naive_ms = timeit(lambda: naive_cleanup(xyz, inst), args.repeat)[0] if open3d_available() else float("nan")
        for backend in ["open3d", "numpy"] if open3d_available() else ["numpy"]:
            cfg = CleanupConfig(backend=backend)
            med, best = timeit(lambda: clean_instances(xyz, inst, depth, cfg), args.repeat)
            rows.append((desc, f"cleanup ({backend})", med, best, naive_ms))
        cleaned = clean_instances(xyz, inst, depth, CleanupConfig())
        labels = {i: "obj" for i in range(1, 100)}
        scores = {i: 0.5 for i in range(1, 100)}
        med, best = timeit(lambda: markers_from_objects(compute_objects(xyz, cleaned, labels, scores)), args.repeat)
        rows.append((desc, "objects + markers", med, best, None))

    kitti_scan = kitti_ten_instances(data)[3]
    spin_xyz, spin_int, spin_ring = synthetic_spin()
    renders = [
        ("KITTI 000001 (120,268 pts) 64x2048, elevation", kitti_scan[:, :3], kitti_scan[:, 3], None,
         RangeImageConfig.velodyne_hdl64e()),
        ("synthetic 128x2048 (262,144 pts), ring field", spin_xyz, spin_int, spin_ring,
         RangeImageConfig(height=128, width=2048, fov_up_deg=22.5, fov_down_deg=-22.5)),
        ("synthetic 128x2048 (262,144 pts), elevation", spin_xyz, spin_int, None,
         RangeImageConfig(height=128, width=2048, fov_up_deg=22.5, fov_down_deg=-22.5)),
    ]
    for desc, xyz, inten, ring, cfg in renders:
        t0 = time.perf_counter()
        naive_render(xyz, cfg, args.naive_points)
        naive_ms = (time.perf_counter() - t0) * 1e3 * len(xyz) / min(args.naive_points, len(xyz))
        med, best = timeit(lambda: render_range_image(xyz, inten, ring, cfg), args.repeat)
        rows.append((desc, "render_range_image", med, best, naive_ms if ring is None else None))
        ri = render_range_image(xyz, inten, ring, cfg)
        med, best = timeit(lambda: to_rgb(ri), args.repeat)
        rows.append((desc, "to_rgb", med, best, None))
        ids = np.zeros(ri.index.shape, np.uint16)
        ids[:, : int(0.4 * cfg.width)] = 3
        med, best = timeit(lambda: masks_to_points(ri, ids), args.repeat)
        rows.append((desc, "masks_to_points", med, best, None))
    return rows


def format_table(rows) -> str:
    lines = [
        "| workload | step | ms / frame (median) | best ms | naive ms / frame | speed-up |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for desc, step, med, best, naive in rows:
        nv = "" if naive is None or math.isnan(naive) else f"{naive:,.1f}"
        su = "" if not nv else f"{naive / med:,.1f}x"
        lines.append(f"| {desc} | {step} | {med:.2f} | {best:.2f} | {nv} | {su} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--naive-points", type=int, default=20_000)
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows = bench(args)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = "\n".join([
        "## bench_cleanup",
        "",
        f"- date: {now}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Python {platform.python_version()}, numpy {np.__version__}, open3d "
        + ("yes" if open3d_available() else "no"),
        f"- load average at start: {load:.2f} (the machine may be shared; 'best ms' is the least noisy)",
        f"- median of {args.repeat} runs per step; naive render scaled from {args.naive_points:,} points",
        "",
        format_table(rows),
        "",
        "cleanup naive = per-instance Open3D DBSCAN on raw points, largest cluster kept (no ground "
        "step, so it does less work and removes less bleed); render naive = per-point Python z-buffer.",
        "",
        *accuracy_lines(args.data),
        "",
    ])
    print(section)
    if not args.no_append:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
