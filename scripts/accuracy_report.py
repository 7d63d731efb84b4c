#!/usr/bin/env python3
"""Accuracy of the perception pipeline on the real data: prints tables, optionally records them.

KITTI (3 frames, prompts = the label files' 2D boxes, one camera): per-object point precision and
recall inside the labels' 3D boxes, for the foundation baseline (projection + occlusion, no 3D
cleanup), the pipeline as configured today (3D cleanup on) and candidate cleanup settings; then a
sensitivity sweep of the cleanup parameters. The issue's bar: cleanup raises precision over the
baseline and lowers recall by at most 2 points.

nuScenes keyframe (6 cameras + LIDAR_TOP, prompts = every per-camera 2D box of annotations.json,
all cameras through label_points_multi): of the annotated 3D boxes whose centre is in view of a
camera, the fraction that receive a label (at least one point inside the box carries the
object's id) and the point precision of the labels inside the boxes.

Every variant uses one segmentation per frame (OpenCV's RNG seeded, so GrabCut is repeatable):
the pipeline labels the cloud once; cleanup variants re-run clean_instances on its raw labels
with the camera depth recomputed exactly as the pipeline does (checked: the default variant
reproduces the pipeline's output point for point).

    python scripts/accuracy_report.py [--write docs/accuracy.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from samfusion.convert.pcd_io import read_nuscenes_bin  # noqa: E402
from samfusion.convert.pointcloud2 import xyz_array  # noqa: E402
from samfusion.geometry.projection import OcclusionConfig  # noqa: E402
from samfusion.io.kitti import iter_kitti, prompts_from_labels  # noqa: E402
from samfusion.offline.nuscenes_sample import load_sample, object_accuracy, sample_prompts  # noqa: E402
from samfusion.offline.prompts_file import PromptSchedule  # noqa: E402
from samfusion.pipeline.evaluation import kitti_point_accuracy, summarize  # noqa: E402
from samfusion.pipeline.perception import PerceptionPipeline, perception_config_from_flat  # noqa: E402
from samfusion.pointcloud.cleanup import CleanupConfig, clean_instances  # noqa: E402
from samfusion.pointcloud.labeling import label_points_multi  # noqa: E402

BEGIN, END = "<!-- accuracy_report:begin -->", "<!-- accuracy_report:end -->"


@dataclass
class Frame:
    """One labeled cloud: what the variants need to re-clean and score it."""

    name: str
    xyz: np.ndarray
    raw: np.ndarray  # instance before cleanup
    depth: np.ndarray  # camera depth of each labeled point (as the pipeline computes it)
    pipeline_instance: np.ndarray  # the pipeline's own output (cleanup as configured)
    score: Callable[[np.ndarray], list[Any]]


def _depth(pipeline: PerceptionPipeline, xyz: np.ndarray, segs: Sequence[Any]) -> np.ndarray:
    cfg = pipeline.config
    inputs = [(pipeline.camera(s.camera).rig(), s.id_image, s.scores) for s in segs]
    occlusion = OcclusionConfig(radius_px=cfg.occlusion_radius_px, depth_tolerance=cfg.occlusion_depth_tolerance_m)
    return label_points_multi(xyz, inputs, occlusion=occlusion, min_depth=cfg.min_depth_m).depth


def kitti_frames(root: Path, seed: int = 0) -> list[Frame]:
    cv2.setRNGSeed(seed)
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    frames = []
    for f in iter_kitti(root):
        pipeline.set_camera_model("camera", f.calib.camera_model)
        pipeline.set_extrinsic("camera", f.calib.T_cam_from_velo)
        for update in prompts_from_labels(f.labels):
            pipeline.apply_prompt(update, {"camera": (f.image.shape[1], f.image.shape[0])})
        seg = pipeline.segment("camera", f.image)
        xyz = xyz_array(f.cloud)
        out = pipeline.label_cloud(xyz, [seg])
        frames.append(Frame(f.frame_id, xyz, out.raw_instance, _depth(pipeline, xyz, [seg]), out.instance,
                            lambda inst, f=f, xyz=xyz: kitti_point_accuracy(xyz, inst, f.labels, f.calib)))
    return frames


def nuscenes_frame(root: Path, seed: int = 0) -> tuple[Frame, Any, set[int]]:
    sample = load_sample(root)
    cv2.setRNGSeed(seed)
    pipeline = PerceptionPipeline(perception_config_from_flat({}))
    for name, rig in sample.rigs.items():
        pipeline.set_camera_model(name, rig.camera_model)
        pipeline.set_extrinsic(name, rig.T_cam_from_lidar)
    prompts = sample_prompts(sample)
    schedule = PromptSchedule(prompts)
    segs = []
    for name in sorted(sample.rigs):
        rgb = np.ascontiguousarray(cv2.imread(str(sample.images[name]))[:, :, ::-1])
        schedule.before_frame(pipeline, name, 0, (rgb.shape[1], rgb.shape[0]))
        segs.append(pipeline.segment(name, rgb))
    xyz = xyz_array(read_nuscenes_bin(sample.cloud_path))
    out = pipeline.label_cloud(xyz, segs)
    prompted = {p.object_id for p in prompts}
    frame = Frame("nuscenes", xyz, out.raw_instance, _depth(pipeline, xyz, segs), out.instance,
                  lambda inst: object_accuracy(sample, xyz, inst, prompted))
    return frame, sample, prompted


# ---------------------------------------------------------------------------------- variants
def _pipeline_cleanup(**extra: Any) -> CleanupConfig:
    """CleanupConfig as PerceptionPipeline builds it (eps_m / min_points from PerceptionConfig)."""
    cfg = perception_config_from_flat({})
    return CleanupConfig(eps_m=extra.pop("eps_m", cfg.cleanup_eps_m),
                         min_points=extra.pop("min_points", cfg.cleanup_min_points), **extra)


def run_variant(frames: Sequence[Frame], cleanup: CleanupConfig | None) -> list[tuple[str, Any]]:
    rows = []
    for f in frames:
        inst = f.raw if cleanup is None else clean_instances(f.xyz, f.raw, f.depth, cleanup)
        rows += [(f.name, r) for r in f.score(inst)]
    return rows


def _fmt(v: float) -> str:
    return "  nan" if v != v else f"{v:5.3f}"


def _nu_summary(frame: Frame, cfg: CleanupConfig | None) -> tuple[int, float]:
    """(objects in view that received a label, micro point precision) on the nuScenes frame."""
    view = [r for _, r in run_variant([frame], cfg) if r.in_view]
    lab = sum(r.labeled_points for r in view)
    return sum(r.received_label for r in view), (sum(r.true_positives for r in view) / lab if lab else float("nan"))


def kitti_section(frames: Sequence[Frame], variants: dict[str, CleanupConfig | None],
                  sweep: dict[str, CleanupConfig | None], nu: Frame) -> list[str]:
    out = ["### KITTI: per-object points (prompts: label 2D boxes)", ""]
    results = {name: run_variant(frames, cfg) for name, cfg in variants.items()}
    head = "| frame | id | class | gt pts | " + " | ".join(f"{n} labeled / P / R" for n in variants) + " |"
    out += [head, "|" + "---|" * (4 + len(variants))]
    for i, (frame, base) in enumerate(results["baseline"]):
        cells = [f"{results[n][i][1].labeled_points} / {_fmt(results[n][i][1].precision)} / "
                 f"{_fmt(results[n][i][1].recall)}" for n in variants]
        out.append(f"| {frame} | {base.object_id} | {base.label} | {base.gt_points} | " + " | ".join(cells) + " |")
    out += ["", "KITTI totals per variant (bar: precision up, recall down at most 2 points, micro and macro), "
            "with the nuScenes keyframe's labeled objects and micro precision for the same setting:", "",
            "| variant | micro P | micro R | macro P | macro R | P vs baseline (macro) | R vs baseline (macro) "
            "| bar met | nuScenes labeled | nuScenes micro P |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    configs = {**variants, **sweep}
    all_rows = {**results, **{n: run_variant(frames, c) for n, c in sweep.items() if n not in results}}
    base = summarize([r for _, r in all_rows["baseline"]])
    for name, rows in all_rows.items():
        s = summarize([r for _, r in rows])
        dp = 100 * (s["macro_precision"] - base["macro_precision"])
        dr = 100 * (s["macro_recall"] - base["macro_recall"])
        dr_micro = 100 * (s["micro_recall"] - base["micro_recall"])
        met = "-" if name == "baseline" else ("yes" if dp > 0 and s["micro_precision"] > base["micro_precision"]
                                              and dr >= -2.0 and dr_micro >= -2.0 else "no")
        nu_labeled, nu_p = _nu_summary(nu, configs[name])
        out.append(f"| {name} | {_fmt(s['micro_precision'])} | {_fmt(s['micro_recall'])} | "
                   f"{_fmt(s['macro_precision'])} | {_fmt(s['macro_recall'])} | {dp:+.1f} pt | {dr:+.1f} pt | {met} "
                   f"| {nu_labeled} | {_fmt(nu_p)} |")
    return out


def nuscenes_section(frame: Frame, sample: Any, prompted: set[int],
                     variants: dict[str, CleanupConfig | None]) -> list[str]:
    out = ["### nuScenes keyframe: 6 cameras, prompts = every per-camera 2D box", "",
           f"{len(sample.objects)} annotated boxes; {sum(len(o.boxes_2d) for o in sample.objects)} 2D boxes over "
           f"{len(sample.rigs)} cameras prompt {len(prompted)} objects.", "",
           "| variant | in view | in view with LiDAR points | received a label | fraction (of in view) | "
           "fraction (of in view with points) | micro P | macro P | micro R |", "|---|---|---|---|---|---|---|---|---|"]
    per_class: dict[str, list[int]] = {}
    for name, cfg in variants.items():
        rows = [r for _, r in run_variant([frame], cfg)]
        view = [r for r in rows if r.in_view]
        with_pts = [r for r in view if r.gt_points > 0]
        got = [r for r in view if r.received_label]
        lab = sum(r.labeled_points for r in view)
        micro_p = sum(r.true_positives for r in view) / lab if lab else float("nan")
        macro_p = float(np.mean([r.precision for r in view if r.labeled_points]))
        micro_r = sum(r.true_positives for r in view) / max(1, sum(r.gt_points for r in view))
        out.append(f"| {name} | {len(view)} | {len(with_pts)} | {len(got)} | {len(got) / len(view):.3f} | "
                   f"{len(got) / len(with_pts):.3f} | {_fmt(micro_p)} | {_fmt(macro_p)} | {_fmt(micro_r)} |")
        if name == "cleanup (today)":
            for r in view:
                c = per_class.setdefault(r.label, [0, 0, 0])
                c[0] += 1
                c[1] += r.gt_points > 0
                c[2] += r.received_label
    out += ["", "Per class (cleanup as configured today): in view / with points / received a label", "",
            "| class | in view | with points | labeled |", "|---|---|---|---|"]
    out += [f"| {k} | {v[0]} | {v[1]} | {v[2]} |" for k, v in sorted(per_class.items())]
    return out


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} logical CPUs visible, Python {platform.python_version()}, OpenCV {cv2.__version__}"


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, check=True).stdout.split()
        changed = [Path(p).name for p in dirty if p.startswith("src/")]
        return rev + (f" (uncommitted in src: {', '.join(changed)})" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kitti", default=str(REPO / "data" / "kitti"))
    ap.add_argument("--nuscenes", default=str(REPO.parent / "shared" / "data" / "nuscenes_mini_sample"))
    ap.add_argument("--write", default="", help="replace the generated block of this markdown file")
    ap.add_argument("--seed", type=int, default=0, help="OpenCV RNG seed (GrabCut initialisation)")
    args = ap.parse_args(argv)

    variants: dict[str, CleanupConfig | None] = {
        "baseline": None,
        "cleanup (today)": _pipeline_cleanup(),
        "ground_tolerance_m=0.05": _pipeline_cleanup(ground_tolerance_m=0.05),
    }
    sweep: dict[str, CleanupConfig | None] = {
        **{f"cleanup_eps_m={v}": _pipeline_cleanup(eps_m=v) for v in (0.3, 1.0)},
        **{f"cleanup_min_points={v}": _pipeline_cleanup(min_points=v) for v in (1, 8)},
        **{f"ground_tolerance_m={v}": _pipeline_cleanup(ground_tolerance_m=v) for v in (0.03, 0.07, 0.15)},
        **{f"ground_search_m={v}": _pipeline_cleanup(ground_search_m=v) for v in (1.5, 5.0)},
        "ground=none": _pipeline_cleanup(ground="none"),
        "keep=largest_cluster": _pipeline_cleanup(keep="largest_cluster"),
    }
    frames = kitti_frames(Path(args.kitti), args.seed)
    nu_frame, sample, prompted = nuscenes_frame(Path(args.nuscenes), args.seed)
    for f in [*frames, nu_frame]:  # the re-cleaning reproduces the pipeline exactly
        redo = clean_instances(f.xyz, f.raw, f.depth, _pipeline_cleanup())
        if not np.array_equal(redo, f.pipeline_instance):
            raise SystemExit(f"{f.name}: re-cleaned labels differ from the pipeline's; the report would be wrong")
    lines = [f"Generated by `scripts/accuracy_report.py` on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"commit {_commit()}; machine: {_machine()}. "
             f"Backend: classical (GrabCut, OpenCV RNG seed {args.seed}).", ""]
    lines += kitti_section(frames, variants, sweep, nu_frame) + [""]
    lines += nuscenes_section(nu_frame, sample, prompted, variants)
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = Path(args.write)
        doc = path.read_text() if path.exists() else f"# Accuracy\n\n{BEGIN}\n{END}\n"
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{path} has no {BEGIN} ... {END} block to replace")
        head, rest = doc.split(BEGIN, 1)
        path.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
