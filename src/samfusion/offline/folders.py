"""Folder inputs: a KITTI object folder (images + scans + calibration) or a plain image folder.

Both write, atomically like bags (:func:`samfusion.offline.runner.atomic_output`), one output
directory holding per frame ``<frame>_overlay.png`` (masks over the image) and ``<frame>_ids.png``
(16-bit instance-id image, 0 = background), a KITTI folder also ``<frame>_labeled.pcd`` (the scan
plus label / instance / score), and ``results.jsonl`` (one line per frame: objects with id, label,
score, 2D box, pixel area and, where a cloud was labeled, point count, centroid and oriented 3D
box) plus ``summary.json`` (counters; for KITTI with label prompts, point accuracy against the
labels' 3D boxes). Frames are taken in sorted file-name order; frame numbers for prompt ranges
count from 0 in that order. The camera stream is called ``camera``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from samfusion.errors import ConfigError, ConversionError
from samfusion.offline.prompts_file import PromptSchedule
from samfusion.offline.runner import Progress, RunOptions, RunStats, atomic_output

__all__ = ["IMAGE_SUFFIXES", "CAMERA", "folder_kind", "image_files", "frame_record",
           "process_image_folder", "process_kitti_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CAMERA = "camera"


def folder_kind(path: str | Path) -> str | None:
    """``"kitti"`` (image_2/, velodyne/, calib/), ``"images"`` (image files) or None."""
    p = Path(path)
    if not p.is_dir():
        return None
    if all((p / sub).is_dir() for sub in ("image_2", "velodyne", "calib")):
        return "kitti"
    return "images" if image_files(p) else None


def image_files(root: Path) -> list[Path]:
    return sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConversionError(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _vec(values: Any) -> list[float]:
    return [round(float(v), 4) for v in values]


def frame_record(frame: str, seg: Any, objects3d: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
    """One results.jsonl line: the frame's objects, with their 3D part when a cloud was labeled."""
    by_id = {o.instance_id: o for o in objects3d}
    objects = []
    for inst in sorted(seg.instances, key=lambda i: i.instance_id):
        item: dict[str, Any] = {"id": int(inst.instance_id), "label": inst.label, "score": round(float(inst.score), 4),
                                "box": list(inst.box), "pixel_area": inst.area,
                                "frames_lost": int(seg.frames_lost.get(inst.instance_id, 0))}
        o3 = by_id.get(inst.instance_id)
        if o3 is not None:
            item.update(point_count=int(o3.point_count), centroid=_vec(o3.centroid), box_center=_vec(o3.center),
                        box_size=_vec(o3.size), yaw=round(float(o3.yaw), 4))
        objects.append(item)
    return {"frame": frame, "camera": seg.camera, **extra, "objects": objects}


def _write_images(out: Path, frame: str, rgb: np.ndarray, seg: Any, overlays: bool) -> None:
    from samfusion.pipeline.overlay import render_overlay

    if not cv2.imwrite(str(out / f"{frame}_ids.png"), seg.id_image.astype(np.uint16)):
        raise ConversionError(f"cannot write {out / f'{frame}_ids.png'}")
    if overlays:
        overlay = render_overlay(rgb, seg.id_image, seg.instances)
        cv2.imwrite(str(out / f"{frame}_overlay.png"), np.ascontiguousarray(overlay[:, :, ::-1]))


def _seed(options: RunOptions) -> None:
    if options.seed is not None:
        cv2.setRNGSeed(int(options.seed))


def process_image_folder(root: str | Path, output: Path, pipeline: Any, schedule: PromptSchedule | None = None,
                         options: RunOptions = RunOptions()) -> RunStats:
    """Segment every image of ``root`` in name order (segmentation results and overlays only)."""
    root = Path(root)
    files = image_files(root)
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    schedule = schedule or PromptSchedule()
    schedule.check_cameras([CAMERA])
    pipeline.camera(CAMERA)
    _seed(options)
    stats, start = RunStats(), time.monotonic()
    progress = Progress(root.name, len(files), enabled=options.progress)
    with atomic_output(output) as staged:
        staged.mkdir()
        with open(staged / "results.jsonl", "w") as results:
            try:
                for index, path in enumerate(files):
                    rgb = _read_rgb(path)
                    stats.counters["prompts_applied"] += schedule.before_frame(
                        pipeline, CAMERA, index, (rgb.shape[1], rgb.shape[0]))
                    seg = pipeline.segment(CAMERA, rgb, float(index))
                    stats.skip_prompts(seg.rejected_prompts, path.name)
                    _write_images(staged, path.stem, rgb, seg, options.overlays)
                    results.write(json.dumps(frame_record(path.stem, seg, image=path.name)) + "\n")
                    stats.counters["images"] += 1
                    stats.counters["images_segmented"] += 1
                    progress.update(1, frames=1)
            finally:
                progress.close()
        stats.seconds = time.monotonic() - start
        (staged / "summary.json").write_text(json.dumps({"source": str(root), **stats.as_dict()}, indent=2))
    return stats


def process_kitti_folder(root: str | Path, output: Path, pipeline: Any, schedule: PromptSchedule | None = None,
                         options: RunOptions = RunOptions(), *, label_prompts: bool = False) -> RunStats:
    """Segment image_2, label each velodyne scan with it (calibration from calib/).

    ``label_prompts``: prompt each frame with its label file's 2D boxes (ids 1.. in file order,
    as ``samfusion kitti`` does) and add per-object point accuracy to summary.json.
    """
    from samfusion.convert.pcd_io import write_pcd
    from samfusion.convert.pointcloud2 import add_fields, xyz_array
    from samfusion.io.kitti import kitti_frame_ids, prompts_from_labels, read_kitti_frame
    from samfusion.pipeline.evaluation import json_safe, kitti_point_accuracy, summarize

    root = Path(root)
    frame_ids = kitti_frame_ids(root)
    schedule = schedule or PromptSchedule()
    schedule.check_cameras([CAMERA])
    if not label_prompts and not schedule:
        raise ConfigError(f"{root}: no prompts; give --prompts / --box / --point / --concept, or --label-prompts")
    _seed(options)
    stats, start = RunStats(), time.monotonic()
    accuracy: list[Any] = []
    rows: list[dict[str, Any]] = []
    progress = Progress(root.name, len(frame_ids), enabled=options.progress)
    with atomic_output(output) as staged:
        staged.mkdir()
        with open(staged / "results.jsonl", "w") as results:
            try:
                for index, frame_id in enumerate(frame_ids):
                    frame = read_kitti_frame(root, frame_id)
                    pipeline.set_camera_model(CAMERA, frame.calib.camera_model)
                    pipeline.set_extrinsic(CAMERA, frame.calib.T_cam_from_velo)
                    size = (frame.image.shape[1], frame.image.shape[0])
                    if label_prompts:
                        for update in prompts_from_labels(frame.labels, target=CAMERA):
                            pipeline.apply_prompt(update, {CAMERA: size})
                            stats.counters["prompts_applied"] += 1
                    stats.counters["prompts_applied"] += schedule.before_frame(pipeline, CAMERA, index, size)
                    seg = pipeline.segment(CAMERA, frame.image, float(index))
                    stats.skip_prompts(seg.rejected_prompts, f"frame {frame_id}")
                    xyz = xyz_array(frame.cloud)
                    labels = pipeline.label_cloud(xyz, [seg])
                    _write_images(staged, frame_id, frame.image, seg, options.overlays)
                    write_pcd(staged / f"{frame_id}_labeled.pcd",
                              add_fields(frame.cloud, label=labels.label, instance=labels.instance, score=labels.score))
                    n_labeled = int(np.count_nonzero(labels.instance))
                    record = frame_record(frame_id, seg, labels.objects, points_labeled=n_labeled)
                    results.write(json.dumps(record) + "\n")
                    if label_prompts:
                        acc = kitti_point_accuracy(xyz, labels.instance, frame.labels, frame.calib)
                        accuracy += acc
                        rows += [{"frame": frame_id, **a.__dict__} for a in acc]
                    stats.counters["images"] += 1
                    stats.counters["images_segmented"] += 1
                    stats.counters["clouds"] += 1
                    stats.counters["clouds_labeled"] += 1
                    stats.counters["points_labeled"] += n_labeled
                    progress.update(1, frames=1)
            finally:
                progress.close()
        stats.seconds = time.monotonic() - start
        summary: dict[str, Any] = {"source": str(root), **stats.as_dict()}
        if label_prompts:
            summary["accuracy"] = summarize(accuracy)
            summary["objects"] = rows
        (staged / "summary.json").write_text(json.dumps(json_safe(summary), indent=2))
    return stats
