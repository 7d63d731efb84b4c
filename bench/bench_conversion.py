#!/usr/bin/env python3
"""Benchmark: PointCloud2 -> structured -> xyz, and building the labeled output cloud.

Clouds
  * KITTI velodyne scan 000001 (120,268 points, 16-byte point: x y z intensity float32), read
    from ../shared/data (or --kitti PATH).
  * Synthetic Ouster-like organized cloud, 128 x 2048, 48-byte point_step in ouster_ros's layout:
    x y z float32 @0/4/8 (gap @12), intensity float32 @16, t uint32 @20, reflectivity uint16 @24,
    ring uint16 @26, ambient uint16 @28, range uint32 @32, padding to 48; ~10 % NaN (no return).

Per cloud it times (median of --repeat runs; input messages carry ``bytes`` data):
  decode     cloud_to_structured(msg)
  xyz        xyz_array(structured)              (finite points kept too: remove_nans=False)
  decode+xyz both
  labeled    labeled_cloud(msg, labels, instances, scores) -> new PointCloud2-like message
and a naive per-point Python baseline, run on a subset (--naive-points) and scaled linearly:
  naive xyz     struct.Struct(fmt).unpack_from(data, offset) per point (what sensor_msgs_py's
                read_points does without numpy), collecting x, y, z
  naive labeled per point: copy the point's bytes + struct.pack the label/instance/score

Prints a table and appends it to bench/RESULTS.md under '## bench_conversion'.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

from benchlib import cpu_model
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from samfusion.convert import (  # noqa: E402
    cloud_to_structured,
    labeled_cloud,
    read_kitti_bin,
    structured_to_cloud,
    xyz_array,
)
from samfusion.convert.pointcloud2 import DATATYPE_TO_DTYPE  # noqa: E402

_STRUCT_CHARS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}


def Msg(**kw):  # noqa: N802
    return SimpleNamespace(**kw)




def timeit(fn, repeat: int) -> tuple[float, float]:
    """(median, best) seconds over ``repeat`` runs after one warm-up run."""
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


# ----------------------------------------------------------------------------------------------
# clouds
# ----------------------------------------------------------------------------------------------
def kitti_cloud(path: Path):
    scan = read_kitti_bin(path)
    return structured_to_cloud(scan, Msg, Msg), f"KITTI {path.stem} ({scan.size:,} pts, 16 B)"


def ouster_cloud(rows: int = 128, cols: int = 2048, seed: int = 0):
    dt = np.dtype({
        "names": ["x", "y", "z", "intensity", "t", "reflectivity", "ring", "ambient", "range"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2", "<u2", "<u2", "<u4"],
        "offsets": [0, 4, 8, 16, 20, 24, 26, 28, 32],
        "itemsize": 48,
    })
    rng = np.random.default_rng(seed)
    a = np.zeros((rows, cols), dt)
    az = np.linspace(0, 2 * np.pi, cols, endpoint=False)[None, :]
    el = np.deg2rad(np.linspace(22.5, -22.5, rows))[:, None]
    r = rng.uniform(1, 80, (rows, cols)).astype(np.float32)
    a["x"] = r * np.cos(el) * np.cos(az)
    a["y"] = r * np.cos(el) * np.sin(az)
    a["z"] = r * np.sin(el)
    a["intensity"] = rng.uniform(0, 3000, (rows, cols))
    a["t"] = (np.arange(cols) * 48828)[None, :]
    a["reflectivity"] = rng.integers(0, 65535, (rows, cols))
    a["ring"] = np.arange(rows)[:, None]
    a["ambient"] = rng.integers(0, 65535, (rows, cols))
    a["range"] = (r * 1000).astype(np.uint32)
    holes = rng.random((rows, cols)) < 0.1
    for n in ("x", "y", "z"):
        a[n][holes] = np.nan
    a["range"][holes] = 0
    return structured_to_cloud(a, Msg, Msg), f"Ouster-like {rows}x{cols} organized ({rows * cols:,} pts, 48 B)"


# ----------------------------------------------------------------------------------------------
# naive baselines (pure Python, per point)
# ----------------------------------------------------------------------------------------------
def naive_read_xyz(msg, limit: int) -> list:
    """sensor_msgs_py.read_points without numpy: one struct.unpack_from per point."""
    fields = sorted(msg.fields, key=lambda f: f.offset)
    fmt = "<" if not msg.is_bigendian else ">"
    off = 0
    names = []
    for f in fields:
        if f.offset > off:
            fmt += "x" * (f.offset - off)
        fmt += _STRUCT_CHARS[f.datatype] * f.count
        names.append(f.name)
        off = f.offset + DATATYPE_TO_DTYPE[f.datatype].itemsize * f.count
    unpack = struct.Struct(fmt).unpack_from
    ix, iy, iz = names.index("x"), names.index("y"), names.index("z")
    data = msg.data
    out = []
    n = min(limit, msg.width * msg.height)
    ps, rs, w = msg.point_step, msg.row_step, msg.width
    for i in range(n):
        r, c = divmod(i, w)
        p = unpack(data, r * rs + c * ps)
        out.append((p[ix], p[iy], p[iz]))
    return out


def naive_labeled(msg, labels, instances, scores, limit: int) -> bytes:
    ps = msg.point_step
    pad = b"\x00" * ((-ps) % 4)
    pack = struct.Struct("<HxxIf").pack
    data = msg.data
    out = bytearray()
    n = min(limit, msg.width * msg.height)
    for i in range(n):
        out += data[i * ps:(i + 1) * ps]
        out += pad
        out += pack(int(labels[i]), int(instances[i]), float(scores[i]))
    return bytes(out)


# ----------------------------------------------------------------------------------------------
def bench_cloud(msg, name: str, repeat: int, naive_points: int) -> list[dict]:
    n = msg.width * msg.height
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 20, n).astype(np.uint16)
    instances = rng.integers(0, 200, n).astype(np.uint32)
    scores = rng.random(n).astype(np.float32)

    decode = timeit(lambda: cloud_to_structured(msg), repeat)
    s = cloud_to_structured(msg)
    xyz = timeit(lambda: xyz_array(s), repeat)
    both = timeit(lambda: xyz_array(cloud_to_structured(msg)), repeat)
    lab = timeit(lambda: labeled_cloud(msg, labels, instances, scores, msg_cls=Msg, field_cls=Msg), repeat)

    # sanity: the fast path and the naive path agree on the subset
    k = min(naive_points, n)
    ref = np.array(naive_read_xyz(msg, k), np.float32).reshape(-1, 3)
    assert np.array_equal(ref, xyz_array(s)[:k], equal_nan=True), "naive and vectorised xyz differ"
    lab_msg = labeled_cloud(msg, labels, instances, scores, msg_cls=Msg, field_cls=Msg)
    assert bytes(lab_msg.data[: k * lab_msg.point_step]) == naive_labeled(msg, labels, instances, scores, k)

    naive_rep = max(1, min(5, repeat))
    t_naive_xyz = timeit(lambda: naive_read_xyz(msg, k), naive_rep)[0] * n / k
    t_naive_lab = timeit(lambda: naive_labeled(msg, labels, instances, scores, k), naive_rep)[0] * n / k

    rows = []
    for step, (t, best), naive in (
        ("decode (cloud_to_structured)", decode, None),
        ("xyz_array", xyz, None),
        ("decode + xyz", both, t_naive_xyz),
        ("labeled_cloud (build output msg)", lab, t_naive_lab),
    ):
        rows.append({
            "cloud": name, "step": step, "ms": t * 1e3, "best_ms": best * 1e3,
            "pts_s": n / t if t > 0 else float("inf"),
            "naive_ms": None if naive is None else naive * 1e3,
            "speedup": None if naive is None else naive / t,
        })
    return rows


def format_table(rows: list[dict], naive_points: int) -> str:
    lines = [
        "| cloud | step | ms / frame (median) | best ms | points / s | naive ms / frame | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        naive = "" if r["naive_ms"] is None else f"{r['naive_ms']:,.0f}"
        speed = "" if r["speedup"] is None else f"{r['speedup']:,.0f}x"
        lines.append(
            f"| {r['cloud']} | {r['step']} | {r['ms']:.2f} | {r['best_ms']:.2f} | {r['pts_s'] / 1e6:,.1f} M "
            f"| {naive} | {speed} |"
        )
    lines.append("")
    lines.append(
        f"naive = pure-Python per-point struct.unpack_from / struct.pack, run on the first {naive_points:,} points "
        "and scaled linearly to the whole frame; speed-up = naive median / vectorised median."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kitti", type=Path, default=REPO.parent / "shared" / "data" / "kitti_object" / "velodyne" / "000001.bin")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--naive-points", type=int, default=20000)
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="print only, do not touch RESULTS.md")
    args = ap.parse_args(argv)

    clouds = []
    if args.kitti.is_file():
        clouds.append(kitti_cloud(args.kitti))
    else:
        print(f"warning: {args.kitti} not found, KITTI cloud skipped", file=sys.stderr)
    clouds.append(ouster_cloud())

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for msg, name in clouds:
        rows.extend(bench_cloud(msg, name, args.repeat, args.naive_points))

    table = format_table(rows, args.naive_points)
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = "\n".join([
        "## bench_conversion",
        "",
        f"- date: {now}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"- Python {platform.python_version()}, numpy {np.__version__}",
        f"- load average at start: {load:.2f} (the machine may be shared; 'best ms' is the least noisy)",
        f"- median of {args.repeat} runs per step; input messages carry `bytes` data; built messages get `array.array('B')`",
        "",
        table,
        "",
    ])
    print(section)
    if not args.no_append:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        exists = args.results.is_file() and args.results.stat().st_size > 0
        with open(args.results, "a", encoding="utf-8") as fh:
            if not exists:
                fh.write("# Benchmark results\n\nEach bench appends a self-contained section.\n\n")
            fh.write(section + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
