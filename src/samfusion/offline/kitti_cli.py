"""``samfusion kitti``: the pipeline over a KITTI object folder, scored against its 3D boxes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from samfusion.convert.pcd_io import write_pcd
from samfusion.convert.pointcloud2 import add_fields, xyz_array
from samfusion.io.kitti import iter_kitti, kitti_frame_ids, prompts_from_labels
from samfusion.pipeline.evaluation import ObjectAccuracy, json_safe, kitti_point_accuracy, summarize
from samfusion.pipeline.overlay import render_overlay
from samfusion.pipeline.perception import PerceptionPipeline, perception_config_from_flat

__all__ = ["add_kitti_parser", "run_kitti", "evaluate_kitti"]


def add_kitti_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "kitti", help="segment and label a KITTI object folder offline, with point accuracy",
        description="Prompts come from the label files' 2D boxes; accuracy is per-object point "
                    "precision / recall inside the labels' 3D boxes.")
    p.add_argument("data", nargs="?", default="data/kitti", help="KITTI object folder")
    p.add_argument("--out", default="", help="write overlays, labeled PCDs and summary.json here")
    p.add_argument("--backend", default="classical", help="classical, sam2, sam3 or sam3_tracker")
    p.add_argument("--checkpoint", default="", help="SAM checkpoint directory or cached hub id")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--allow-download", action="store_true",
                   help="let transformers download a hub checkpoint that is not in the local cache")
    p.add_argument("--no-cleanup", action="store_true", help="skip the 3D instance cleanup")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def evaluate_kitti(data: str | Path, config: dict[str, Any],
                   out: Path | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Run the pipeline on every frame; returns per-object rows and pooled metrics.

    With ``out``, also writes ``<frame>_overlay.png``, ``<frame>_labeled.pcd`` and summary.json.
    """
    kitti_frame_ids(data)  # a folder without frames fails before anything is loaded or created
    pipeline = PerceptionPipeline(perception_config_from_flat(config))
    rows: list[dict[str, Any]] = []
    accuracies: list[ObjectAccuracy] = []
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for frame in iter_kitti(data):
        pipeline.set_camera_model("camera", frame.calib.camera_model)
        pipeline.set_extrinsic("camera", frame.calib.T_cam_from_velo)
        size = {"camera": (frame.image.shape[1], frame.image.shape[0])}
        for update in prompts_from_labels(frame.labels):
            pipeline.apply_prompt(update, size)
        seg = pipeline.segment("camera", frame.image)
        xyz = xyz_array(frame.cloud)
        labels = pipeline.label_cloud(xyz, [seg])
        acc = kitti_point_accuracy(xyz, labels.instance, frame.labels, frame.calib)
        accuracies += acc
        rows += [{"frame": frame.frame_id, **a.__dict__, "precision": a.precision, "recall": a.recall}
                 for a in acc]
        if out is not None:
            _write_frame(out, frame.frame_id, frame.image, frame.cloud, seg, labels)
    totals = summarize(accuracies)
    if out is not None:
        (out / "summary.json").write_text(json.dumps(json_safe({"objects": rows, "accuracy": totals}), indent=2))
    return rows, totals


def _write_frame(out: Path, frame_id: str, image: np.ndarray, cloud: np.ndarray, seg: Any, labels: Any) -> None:
    from PIL import Image as PILImage

    PILImage.fromarray(render_overlay(image, seg.id_image, seg.instances)).save(out / f"{frame_id}_overlay.png")
    write_pcd(out / f"{frame_id}_labeled.pcd",
              add_fields(cloud, label=labels.label, instance=labels.instance, score=labels.score))


def run_kitti(args: argparse.Namespace) -> int:
    config = {"backend": args.backend, "checkpoint": args.checkpoint, "device": args.device,
              "cleanup": not args.no_cleanup, "allow_download": args.allow_download}
    start = time.perf_counter()
    rows, totals = evaluate_kitti(args.data, config, Path(args.out) if args.out else None)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"objects": rows, "accuracy": totals}, indent=2))
        return 0
    print(f"{'frame':7} {'id':>3} {'label':11} {'gt':>5} {'labeled':>7} {'prec':>5} {'rec':>5}")
    for r in rows:
        print(f"{r['frame']:7} {r['object_id']:>3} {r['label']:11} {r['gt_points']:>5} "
              f"{r['labeled_points']:>7} {r['precision']:>5.2f} {r['recall']:>5.2f}")
    print(f"micro precision {totals['micro_precision']:.3f}  micro recall {totals['micro_recall']:.3f}  "
          f"macro precision {totals['macro_precision']:.3f}  macro recall {totals['macro_recall']:.3f}  "
          f"({int(totals['objects'])} objects, {elapsed:.1f} s)")
    return 0
