"""The main demo: bundled KITTI frames through real nodes over DDS, results written to disk.

Starts the perception node and the KITTI player as separate processes, records their outputs
from a third node in this process, and writes per frame: the node's overlay PNG, an overlay
with the labeled LiDAR points drawn on it, the labeled cloud (PCD, fields x y z intensity
label instance score), and a summary (per object: id, label, points, centroid, and point
precision / recall against the KITTI 3D boxes). Usage: ``python -m samfusion.ros.demo``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from sam_fusion.msg import SegmentationResult
from samfusion.convert.image import image_to_numpy
from samfusion.convert.pcd_io import write_pcd
from samfusion.convert.pointcloud2 import cloud_to_structured, xyz_array
from samfusion.geometry.projection import project_points
from samfusion.errors import SamFusionError
from samfusion.io.kitti import kitti_frame_ids, read_kitti_frame
from samfusion.pipeline.evaluation import json_safe, kitti_point_accuracy, summarize
from samfusion.pipeline.overlay import draw_points
from samfusion.ros.kitti_player import default_data_dir
from samfusion.ros.processes import node_command, stop_process
from samfusion.ros.qos import LOG_QOS, RESULT_QOS

__all__ = ["main"]


class Recorder(Node):
    """Keeps the latest overlay / result per stamp and every labeled cloud."""

    def __init__(self, camera: str) -> None:
        super().__init__("sam_fusion_demo_recorder")
        self.frames: dict[tuple[int, int], str] = {}
        self.overlays: dict[tuple[int, int], Image] = {}
        self.results: dict[tuple[int, int], SegmentationResult] = {}
        self.clouds: dict[tuple[int, int], PointCloud2] = {}
        self.markers: dict[tuple[int, int], MarkerArray] = {}
        self.create_subscription(String, "kitti_player/frames", self._on_frame, LOG_QOS)
        self.create_subscription(Image, f"{camera}/overlay", lambda m: self._keep(self.overlays, m), RESULT_QOS)
        self.create_subscription(SegmentationResult, f"{camera}/segmentation",
                                 lambda m: self._keep(self.results, m), RESULT_QOS)
        self.cloud_sub = self.create_subscription(PointCloud2, "points_labeled",
                                                  lambda m: self._keep(self.clouds, m), RESULT_QOS)
        self.create_subscription(MarkerArray, "objects", self._on_markers, RESULT_QOS)
        self.model_error = ""  # set when the perception node reports that its model did not load
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, RESULT_QOS)

    @staticmethod
    def _key(msg: Any) -> tuple[int, int]:
        return (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))

    def _keep(self, store: dict, msg: Any) -> None:
        store[self._key(msg)] = msg

    def _on_markers(self, msg: MarkerArray) -> None:
        if msg.markers:
            self.markers[self._key(msg.markers[0])] = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": perception"):
                values = {kv.key: kv.value for kv in status.values}
                if values.get("model_loaded") == "False" and values.get("model_load_errors", "0") != "0":
                    self.model_error = f"the perception node could not load its {values.get('backend')} model"

    def _on_frame(self, msg: String) -> None:
        frame_id, sec, nanosec = msg.data.split()
        self.frames[(int(sec), int(nanosec))] = frame_id

    def complete(self, expected: int) -> bool:
        done = [k for k in self.frames if k in self.clouds and k in self.overlays]
        return len(done) >= expected


class _DemoFailed(RuntimeError):
    """Why the demo stopped, with the last warnings and errors of the log that explains it."""

    def __init__(self, what: str, log: Path) -> None:
        lines = [line for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
                 if line.strip()]
        tail = [line for line in lines if "WARN" in line or "ERROR" in line or "Error" in line][-5:]
        tail = tail or lines[-3:]  # a node that refused its parameters prints one plain line
        detail = "\n  ".join(tail) if tail else "(the log is empty)"
        super().__init__(f"{what}; see {log}\n  {detail}")


def _spin_until(node: Node, done: Any, seconds: float) -> bool:
    """Spin until ``done()`` or ``seconds`` pass; also require that many 0.1 s spins, so a jump of
    the machine's clock (seen on suspended VMs) cannot end the wait early."""
    start = time.monotonic()
    spins = 0
    while not done():
        if time.monotonic() - start > seconds and spins > seconds * 10:
            return False
        rclpy.spin_once(node, timeout_sec=0.1)
        spins += 1
    return True


def _start(module: str, params: dict[str, Any], log: Path) -> subprocess.Popen:
    return subprocess.Popen(node_command(module, params), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _write_frame(out: Path, data_dir: str, frame_id: str, rec: Recorder, key: tuple[int, int]) -> dict:
    from PIL import Image as PILImage

    frame = read_kitti_frame(data_dir, frame_id)
    overlay = image_to_numpy(rec.overlays[key])
    PILImage.fromarray(overlay).save(out / f"{frame_id}_overlay.png")
    cloud = cloud_to_structured(rec.clouds[key])
    write_pcd(out / f"{frame_id}_labeled.pcd", cloud)
    xyz = xyz_array(cloud).astype(np.float64)
    instance = cloud["instance"].astype(np.int64)
    proj = project_points(xyz, frame.calib.T_cam_from_velo, frame.calib.camera_model, min_depth=0.5)
    points_png = draw_points(overlay, proj.u[proj.valid], proj.v[proj.valid], instance[proj.valid], radius=2)
    PILImage.fromarray(points_png).save(out / f"{frame_id}_points.png")
    result = rec.results.get(key)
    objects = []
    for obj in (result.objects if result is not None else []):
        mask = instance == obj.id
        centroid = xyz[mask].mean(axis=0).tolist() if mask.any() else [math.nan] * 3
        objects.append({"id": int(obj.id), "label": obj.label, "score": round(float(obj.score), 3),
                        "pixels": int(obj.pixel_area), "points": int(mask.sum()),
                        "centroid": [round(c, 2) for c in centroid]})
    accuracy = kitti_point_accuracy(xyz, instance, frame.labels, frame.calib)
    for entry in objects:
        acc = next((a for a in accuracy if a.object_id == entry["id"]), None)
        if acc is not None:
            entry.update(gt_points=acc.gt_points, precision=round(acc.precision, 3),
                         recall=round(acc.recall, 3))
    return {"frame": frame_id, "points": int(len(cloud)), "labeled_points": int((instance > 0).sum()),
            "objects": objects, "accuracy": [a.__dict__ for a in accuracy]}


def _print_summary(frames: list[dict], out: Path) -> None:
    print(f"\nSAM Fusion demo: {len(frames)} KITTI frames through real ROS 2 nodes")
    print(f"{'frame':7} {'id':>3} {'label':11} {'score':>5} {'points':>6} {'centroid (m, velodyne)':>24} "
          f"{'gt':>5} {'prec':>5} {'rec':>5}")
    for f in frames:
        for o in f["objects"]:
            cx, cy, cz = o["centroid"]
            print(f"{f['frame']:7} {o['id']:>3} {o['label']:11} {o['score']:>5.2f} {o['points']:>6} "
                  f"{f'({cx:6.2f}, {cy:6.2f}, {cz:5.2f})':>24} {o.get('gt_points', 0):>5} "
                  f"{o.get('precision', float('nan')):>5.2f} {o.get('recall', float('nan')):>5.2f}")


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


#: What one run writes; removed first, so the folder never mixes two runs.
_RESULT_GLOBS = ("*_overlay.png", "*_points.png", "*_labeled.pcd", "summary.json")


def _prepare_out(out: Path) -> str:
    """Create ``out`` and remove an earlier run's results; returns why it cannot, or ''."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for pattern in _RESULT_GLOBS:
            for old in out.glob(pattern):
                old.unlink()
    except OSError as exc:
        return f"cannot use output folder {out}: {exc.strerror or exc}"
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m samfusion.ros.demo", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="out/demo", help="output folder (results of an earlier run there are replaced)")
    ap.add_argument("--data", default="", help="KITTI object folder (image_2, velodyne, calib, label_2); "
                    "empty: the bundled frames")
    ap.add_argument("--backend", default="classical", help="segmentation backend (classical, sam2, sam3, sam3_tracker)")
    ap.add_argument("--checkpoint", default="", help="checkpoint for SAM backends (local directory or hub id)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda:N (SAM backends)")
    ap.add_argument("--rate", type=_positive, default=0.5, help="player frames per second")
    ap.add_argument("--timeout", type=_positive, default=120.0, help="give up after this many seconds")
    args = ap.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    data_dir = args.data or default_data_dir()
    out = Path(args.out)
    try:
        expected = len(kitti_frame_ids(data_dir))
        problem = _prepare_out(out)
    except SamFusionError as exc:
        problem = str(exc)
    if problem:
        print(f"demo: {problem}", file=sys.stderr)
        return 2
    node_params = {"backend": args.backend, "device": args.device}
    if args.checkpoint:
        node_params["checkpoint"] = args.checkpoint
    perception = _start("samfusion.ros.perception_node", node_params, out / "perception_node.log")
    rclpy.init()
    rec = Recorder("camera")
    player = None
    failure = ""
    try:
        def node_up() -> bool:
            if perception.poll() is not None:
                raise _DemoFailed("the perception node exited", out / "perception_node.log")
            return rec.cloud_sub.get_publisher_count() >= 1

        def frames_done() -> bool:
            if rec.model_error:
                raise _DemoFailed(rec.model_error, out / "perception_node.log")
            for proc, log in ((perception, "perception_node.log"), (player, "kitti_player.log")):
                if proc is not None and proc.poll() not in (None, 0):
                    raise _DemoFailed(f"{log.split('.')[0]} exited with status {proc.returncode}", out / log)
            return rec.complete(expected)

        _spin_until(rec, node_up, args.timeout)
        # Paced by the labeled cloud: every frame is segmented with its own prompts, however slow
        # the machine (a live node would drop frames it cannot keep up with as stale).
        player = _start("samfusion.ros.kitti_player",
                        {"data_dir": data_dir, "rate_hz": args.rate, "pace_topic": "points_labeled",
                         "pace_timeout_s": max(1.0, args.timeout / max(1, expected))},
                        out / "kitti_player.log")
        _spin_until(rec, frames_done, args.timeout)
        _spin_until(rec, lambda: False, 1.5)  # the result re-published with 3D fields follows the cloud
        if not rec.complete(expected):
            raise _DemoFailed(f"timed out after {args.timeout:g} s: {len(rec.clouds)} labeled clouds and "
                              f"{len(rec.overlays)} overlays of {expected} frames", out / "perception_node.log")
        frames = [_write_frame(out, data_dir, rec.frames[k], rec, k)
                  for k in sorted(rec.frames) if k in rec.clouds]
    except _DemoFailed as exc:
        failure = str(exc)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        if player is not None:
            stop_process(player, timeout=10)
        stop_process(perception, timeout=10)
        rec.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if failure:
        print(f"demo failed: {failure}", file=sys.stderr)
        return 1
    all_acc = [acc for f in frames for acc in f["accuracy"]]
    from samfusion.pipeline.evaluation import ObjectAccuracy

    totals = summarize([ObjectAccuracy(**a) for a in all_acc])
    (out / "summary.json").write_text(json.dumps(json_safe({"frames": frames, "accuracy": totals}), indent=2))
    _print_summary(frames, out)
    print(f"\npoint accuracy vs KITTI 3D boxes: micro precision {totals['micro_precision']:.3f}, "
          f"micro recall {totals['micro_recall']:.3f}, macro precision {totals['macro_precision']:.3f}, "
          f"macro recall {totals['macro_recall']:.3f} over {int(totals['objects'])} objects")
    print(f"\nresults in {out.resolve()}:")
    for f in frames:
        print(f"  {f['frame']}_overlay.png  {f['frame']}_points.png  {f['frame']}_labeled.pcd")
    print("  summary.json, perception_node.log, kitti_player.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
