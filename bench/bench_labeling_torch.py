"""Benchmark: multi-camera labeling, numpy path vs the torch path (CPU, and CUDA when present).

Clouds: the synthetic 128 x 2048 scan of bench_projection.py (262,144 points) and the same
scene at 1024 x 2048 (2,097,152 points), each labeled from the six nuScenes cameras of the
real calib.json (1600 x 900 id images of random rectangles, random scores, occlusion r=2).
For each device: warm-up, then the median and best of ``--repeats`` runs (CUDA: synchronized
before and after each run; one variant with the cloud already on the GPU, one uploading the
numpy cloud; both upload the id images and copy the labels back to the host, as a node would).
Each torch result is compared with the numpy labels (points with a different instance,
largest per-camera difference in visible counts). Prints a Markdown section; writes it to
``$OUT/bench_labeling_torch.md`` when ``OUT`` is set; ``--append`` adds it to bench/RESULTS.md.

Usage: PYTHONPATH=src python bench/bench_labeling_torch.py [--repeats 10] [--threads 1] [--append]
GPU check on a lent device machine: bench/device/README.md (prepare.sh here, run.sh there).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_projection import id_image, synthetic_cloud  # noqa: E402

from samfusion.geometry import load_nuscenes_calib  # noqa: E402
from samfusion.pointcloud.labeling import CameraView, PointLabels, label_points_multi  # noqa: E402
from samfusion.pointcloud.labeling_torch import label_points_multi_torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    """Median and best milliseconds of ``repeats`` runs after one warm-up run."""
    fn()
    sync()
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3, min(samples) * 1e3


def agreement(ref: PointLabels, got: PointLabels, cameras: int) -> str:
    diff = int((ref.instance != got.instance).sum())
    counts = [np.bincount(p.camera_index[p.visible], minlength=cameras) for p in (ref, got)]
    return f"{diff} pts differ, visible/cam max diff {int(np.abs(counts[0] - counts[1]).max())}"


def run_case(name: str, xyz: np.ndarray, views: list[CameraView], repeats: int, devices: list[str]) -> list[str]:
    n = len(xyz)
    ref = label_points_multi(xyz, views)
    rows = []
    med_np, best_np = timed(lambda: label_points_multi(xyz, views), repeats, lambda: None)
    rows.append(f"| {name} | {n:,} | numpy (label_points_multi) | {med_np:.1f} | {best_np:.1f} "
                f"| {n / med_np / 1e3:.1f} | 1.0x | reference |")
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        variants: list[tuple[str, Callable[[], PointLabels]]] = [
            (f"torch {dev}, numpy cloud", lambda d=dev: label_points_multi_torch(xyz, views, device=d))
        ]
        if dev == "cuda":
            on_gpu = torch.from_numpy(xyz).cuda()
            variants.append(
                ("torch cuda, cloud on GPU", lambda: label_points_multi_torch(on_gpu, views, device="cuda"))
            )
            torch.cuda.reset_peak_memory_stats()
        for label, fn in variants:
            med, best = timed(fn, repeats, sync)
            note = agreement(ref, fn(), len(views))
            if dev == "cuda":
                note += f"; peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            rows.append(f"| {name} | {n:,} | {label} | {med:.1f} | {best:.1f} | {n / med / 1e3:.1f} "
                        f"| {med_np / med:.2f}x | {note} |")
    rows.append(f"| {name} | | visible {int(ref.visible.sum()):,}, labeled {int(ref.labeled.sum()):,} | | | | | |")
    return rows


def machine() -> list[str]:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    lines = [
        f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}",
        f"- CPU: {model}, {os.cpu_count()} cores (shared with other jobs); torch threads {torch.get_num_threads()}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}",
        f"- load average at start: {os.getloadavg()[0]:.2f} (the machine is shared; 'best ms' is the least noisy)",
    ]
    if torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}")
    else:
        lines.append("- GPU: none here (no device lent); CUDA numbers are not measured")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--large-repeats", type=int, default=None,
                        help="repeats for the 2M cloud (default: --repeats)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: with 2 threads on 2 shared cores, OpenMP barriers "
                             "made the torch CPU path 3-7x slower whenever another job held a core)")
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    rigs = list(load_nuscenes_calib(DATA / "nuscenes_mini_sample" / "calib.json").values())
    views = []
    for i, rig in enumerate(rigs):
        w, h = rig.camera_model.image_size
        ids, scores = id_image(w, h, seed=i)
        views.append(CameraView(rig, ids, scores, id_offset=1000 * i))
    lines = [
        "| cloud | points | path | ms / cloud (median) | best ms | M points/s (median) | vs numpy "
        "| agreement with numpy |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    lines += run_case("synthetic 128x2048 -> 6 nuScenes cams", synthetic_cloud(), views, args.repeats, devices)
    lines += run_case("synthetic 1024x2048 -> 6 nuScenes cams", synthetic_cloud(rings=1024), views,
                      args.large_repeats or args.repeats, devices)
    header = ["## bench_labeling_torch", ""] + machine() + [
        f"- median and best of {args.repeats} runs (2M cloud: {args.large_repeats or args.repeats}) after a "
        "warm-up; occlusion r=2, tolerance 0.5 m; pinhole cameras; torch results are host numpy arrays",
        "",
    ]
    notes = [
        "",
        "'vs numpy' = numpy median / this median. The torch path recomputes the same rules (same",
        "visible set and labels; see src/samfusion/pointcloud/labeling_torch.py for the rounding notes).",
    ]
    section = "\n".join(header + lines + notes) + "\n"
    print(section)
    out = os.environ.get("OUT")
    if out:
        Path(out, "bench_labeling_torch.md").write_text(section)
    if args.append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n" + section)


if __name__ == "__main__":
    main()
