#!/usr/bin/env python3
"""Soak run (a script, not a CI test): the perception node under camera 30 Hz + LiDAR 10 Hz.

Three processes: the perception node (``python -m samfusion.ros.perception_node``, classical
backend by default), a sensor publisher (this script with ``--publish``: one bundled KITTI frame
replayed as image + camera_info at ``--camera-hz`` and its cloud at ``--lidar-hz``, each cloud
stamped like the image it was taken with, box prompts from the labels sent once), and this
process, which records for ``--minutes``:

- the node's resident memory every ``--sample-s`` seconds (psutil when installed, else
  /proc/<pid>/status VmRSS),
- output latency: receive time of each labeled cloud minus its stamp (both system time),
- the node's /diagnostics counters (received, segmented, skipped, labeled, dropped, refused).

It prints a table and appends a '## soak' section to bench/RESULTS.md (date, machine, duration,
RSS first / last / max and a linear-fit slope, latency p50 / p95 per minute, counts).

    source scripts/env.sh && python bench/soak.py --minutes 10

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_DOMAIN_ID of its
own (``--domain``, else $ROS_DOMAIN_ID, else one derived from the pid) for all three processes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from benchlib import cpu_model  # noqa: E402
from samfusion.ros.processes import stop_process  # noqa: E402
COUNTERS = ("images_received", "frames_segmented", "images_skipped", "clouds_received", "clouds_labeled",
            "clouds_dropped", "clouds_unlabeled", "bad_image", "bad_cloud", "bad_prompt", "worker_errors")


# ---- environment ---------------------------------------------------------------------------
def dds_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    env["ROS_DOMAIN_ID"] = str(domain)
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_localhost.xml"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env




def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (psutil if installed, else /proc/<pid>/status)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (psutil if installed, else /proc/<pid>/stat)."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- sensor publisher (runs as its own process) ---------------------------------------------
def publish(args: argparse.Namespace) -> int:
    import rclpy
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from std_msgs.msg import Header

    from sam_fusion.msg import Box2D, Prompt
    from samfusion.convert.image import numpy_to_image
    from samfusion.convert.pointcloud2 import structured_to_cloud
    from samfusion.geometry.camera_info import camera_model_to_camera_info
    from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
    from samfusion.ros.qos import LATCHED_QOS, PROMPT_QOS, SENSOR_QOS

    frame = read_kitti_frame(args.data, args.frame)
    rclpy.init()
    node = rclpy.create_node("soak_sensors")
    cam, lidar = Header(frame_id="camera_2_optical"), Header(frame_id="velodyne")
    image = numpy_to_image(frame.image, "rgb8", Image, cam)
    info = camera_model_to_camera_info(frame.calib.camera_model, CameraInfo, cam)
    cloud = structured_to_cloud(frame.cloud, PointCloud2, PointField, lidar)
    pubs = {"image": node.create_publisher(Image, "camera/image_raw", SENSOR_QOS),
            "info": node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS),
            "cloud": node.create_publisher(PointCloud2, "points", SENSOR_QOS),
            "prompt": node.create_publisher(Prompt, "prompts", PROMPT_QOS),
            "extrinsic": node.create_publisher(TransformStamped, "camera/lidar_extrinsic", LATCHED_QOS)}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(p.get_subscription_count() for p in pubs.values()):
        rclpy.spin_once(node, timeout_sec=0.1)
    ext = TransformStamped(header=cam, child_frame_id="velodyne")
    t, q = frame.calib.T_cam_from_velo.to_translation_quaternion()
    ext.transform.translation.x, ext.transform.translation.y, ext.transform.translation.z = map(float, t)
    r = ext.transform.rotation
    r.x, r.y, r.z, r.w = map(float, q)
    pubs["extrinsic"].publish(ext)
    for update in prompts_from_labels(frame.labels, target="camera"):
        pubs["prompt"].publish(Prompt(target="camera", action=int(update.action), object_id=update.object_id,
                                      label=update.label,
                                      boxes=[Box2D(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max,
                                                   positive=True) for b in update.boxes]))
    every = max(1, round(args.camera_hz / args.lidar_hz))
    sent = {"images": 0, "clouds": 0}
    period = 1.0 / args.camera_hz
    start = time.monotonic()
    tick = 0
    try:
        while time.monotonic() - start < args.seconds:
            stamp = node.get_clock().now().to_msg()
            image.header.stamp = info.header.stamp = stamp
            pubs["info"].publish(info)
            pubs["image"].publish(image)
            sent["images"] += 1
            if tick % every == 0:  # the LiDAR sweep taken with this camera frame
                cloud.header.stamp = stamp
                pubs["cloud"].publish(cloud)
                sent["clouds"] += 1
            tick += 1
            rclpy.spin_once(node, timeout_sec=0.0)
            delay = start + tick * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a plain loop, not a callback: nothing else runs here
    except KeyboardInterrupt:
        pass
    sent["seconds"] = time.monotonic() - start
    print("SENT " + json.dumps(sent), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---- monitor --------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def slope_per_min(t_s: list[float], values: list[float]) -> float:
    if len(t_s) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(t_s) / 60.0, np.asarray(values), 1)[0])


def run(args: argparse.Namespace) -> int:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import PointCloud2

    from samfusion.ros.qos import RESULT_QOS

    domain = args.domain if args.domain is not None else int(os.environ.get("ROS_DOMAIN_ID", os.getpid() % 100 + 1))
    env = dds_env(domain)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID",
                                           "FASTRTPS_DEFAULT_PROFILES_FILE")})
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    seconds = args.minutes * 60.0
    logdir = Path(tempfile.mkdtemp(prefix="soak-"))
    node_log = open(logdir / "perception.log", "w")
    params = {"backend": args.backend, "publish_overlay": str(args.overlay).lower(),
              "log_throttle_s": "10.0", **dict(p.split(":=", 1) for p in args.param)}
    cmd = [sys.executable, "-m", "samfusion.ros.perception_node", "--ros-args", "-r", "__node:=soak_perception"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    load_start = os.getloadavg()[0]
    perception = subprocess.Popen(cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                  start_new_session=True)
    rclpy.init()
    node = rclpy.create_node("soak_monitor")
    latencies: list[tuple[float, float]] = []  # (seconds since start, ms)
    diag: dict[str, str] = {}
    t0 = [0.0]

    def on_cloud(msg: Any) -> None:
        now = time.time()
        latencies.append((time.monotonic() - t0[0], (now - msg.header.stamp.sec - msg.header.stamp.nanosec * 1e-9) * 1e3))

    def on_diag(msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith("soak_perception"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(PointCloud2, "points_labeled", on_cloud, RESULT_QOS)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RESULT_QOS)
    deadline = time.monotonic() + 120
    while diag.get("model_loaded") != "True" and time.monotonic() < deadline and perception.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.1)
    if diag.get("model_loaded") != "True":
        print(f"perception node not ready; log in {logdir}", file=sys.stderr)
        perception.send_signal(signal.SIGINT)
        return 1
    publisher = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--publish",
                                  "--seconds", str(seconds), "--camera-hz", str(args.camera_hz),
                                  "--lidar-hz", str(args.lidar_hz), "--frame", args.frame, "--data", str(args.data)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO, text=True)
    t0[0] = time.monotonic()
    samples: list[dict[str, Any]] = []
    next_sample = 0.0
    alive = True
    print(f"soak: {args.minutes:g} min, camera {args.camera_hz:g} Hz, LiDAR {args.lidar_hz:g} Hz, "
          f"backend {args.backend}, node pid {perception.pid}, domain {domain}, log {logdir}", flush=True)
    print(f"{'t_s':>6} {'rss_MB':>8} {'clouds/s':>8} {'lat_p50':>8} {'lat_p95':>8} {'skipped':>8} "
          f"{'dropped':>8} {'unlab.':>7} {'cpu%':>6} {'load1':>6}", flush=True)
    while True:
        elapsed = time.monotonic() - t0[0]
        if elapsed >= next_sample:
            alive = perception.poll() is None
            if not alive:
                break
            window = [ms for (t, ms) in latencies if next_sample - args.sample_s <= t < next_sample]
            sample = {"t_s": round(elapsed, 1), "rss_mb": rss_mb(perception.pid),
                      "cpu_s": cpu_seconds(perception.pid), "load1": os.getloadavg()[0],
                      "labeled": len([1 for (t, _) in latencies if t < elapsed]),
                      **{k: int(diag.get(k, "0")) for k in COUNTERS},
                      "node_p50_ms": diag.get("latency_p50_ms", "nan"), "node_p95_ms": diag.get("latency_p95_ms", "nan")}
            samples.append(sample)
            rate = len(window) / args.sample_s if samples[1:] else float("nan")
            cpu = (100 * (sample["cpu_s"] - samples[-2]["cpu_s"]) / (sample["t_s"] - samples[-2]["t_s"])
                   if samples[1:] else float("nan"))
            print(f"{sample['t_s']:6.0f} {sample['rss_mb']:8.1f} {rate:8.2f} {percentile(window, 50):8.0f} "
                  f"{percentile(window, 95):8.0f} {sample['images_skipped']:8d} {sample['clouds_dropped']:8d} "
                  f"{sample['clouds_unlabeled']:7d} {cpu:6.0f} {sample['load1']:6.2f}", flush=True)
            if elapsed >= seconds:
                break
            next_sample += args.sample_s
        rclpy.spin_once(node, timeout_sec=0.05)
    try:
        out, _ = publisher.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        publisher.send_signal(signal.SIGINT)
        out, _ = publisher.communicate(timeout=10)
    sent = next((json.loads(line[5:]) for line in out.splitlines() if line.startswith("SENT ")), {})
    end = time.monotonic() + 3.0  # the last diagnostics
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    final = {k: int(diag.get(k, "0")) for k in COUNTERS}
    load_end = os.getloadavg()[0]
    stop_process(perception)
    node.destroy_node()
    rclpy.shutdown()
    node_log.close()

    section = report(args, samples, latencies, sent, final, alive, load_start, load_end, logdir)
    print(section)
    if args.results and not args.no_append:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write("\n" + section + "\n")
    return 0 if alive else 1


def report(args: argparse.Namespace, samples: list[dict[str, Any]], latencies: list[tuple[float, float]],
           sent: dict[str, Any], final: dict[str, int], alive: bool, load_start: float, load_end: float,
           logdir: Path) -> str:
    t = [s["t_s"] for s in samples]
    rss = [s["rss_mb"] for s in samples]
    after1 = [(ti, r) for ti, r in zip(t, rss) if ti >= 60.0]
    minutes = int(np.ceil(max(t) / 60.0)) if t else 0
    rows = []
    for m in range(minutes):
        lat = [ms for (ts, ms) in latencies if 60 * m <= ts < 60 * (m + 1)]
        in_m = [s for s in samples if 60 * m <= s["t_s"] <= 60 * (m + 1)]
        rss_m = [s["rss_mb"] for s in in_m]
        cpu = (100 * (in_m[-1]["cpu_s"] - in_m[0]["cpu_s"]) / (in_m[-1]["t_s"] - in_m[0]["t_s"])
               if len(in_m) > 1 else float("nan"))
        load = float(np.mean([s["load1"] for s in in_m])) if in_m else float("nan")
        rows.append(f"| {m + 1} | {len(lat)} | {len(lat) / 60:.2f} | {percentile(lat, 50):.0f} | "
                    f"{percentile(lat, 95):.0f} | {max(lat, default=float('nan')):.0f} | "
                    f"{(max(rss_m) if rss_m else float('nan')):.1f} | {cpu:.0f} | {load:.2f} |")
    secs = float(sent.get("seconds", args.minutes * 60)) or 1.0
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "## soak",
        "",
        f"- date: {now}; duration {args.minutes:g} min ({secs:.0f} s of sensor data); node "
        f"{'alive at the end' if alive else 'DIED'}",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores (shared); load average {load_start:.2f} at start, "
        f"{load_end:.2f} at the end; Python {platform.python_version()}",
        f"- perception node: backend {args.backend}, overlay {'on' if args.overlay else 'off'}, "
        f"params {' '.join(args.param) or '(defaults)'}; KITTI {args.frame} replayed: camera "
        f"{args.camera_hz:g} Hz (1242x375 rgb8), LiDAR {args.lidar_hz:g} Hz (120,268 points), box prompts once",
        f"- sent: {sent.get('images', '?')} images, {sent.get('clouds', '?')} clouds; node received "
        f"{final['images_received']} images, {final['clouds_received']} clouds",
        f"- node counters: segmented {final['frames_segmented']}, images skipped as stale "
        f"{final['images_skipped']}, clouds labeled {final['clouds_labeled']} (of them without a camera "
        f"frame in max_skew_s: {final['clouds_unlabeled']}), clouds dropped (replaced while pending) "
        f"{final['clouds_dropped']}, bad inputs {final['bad_image'] + final['bad_cloud'] + final['bad_prompt']}, "
        f"worker errors {final['worker_errors']}",
        f"- resident memory (every {args.sample_s:g} s, {len(rss)} samples): first {rss[0]:.1f} MiB, last "
        f"{rss[-1]:.1f} MiB, max {max(rss):.1f} MiB; linear fit {slope_per_min(t, rss):+.3f} MiB/min over the "
        f"run, {slope_per_min([a for a, _ in after1], [b for _, b in after1]):+.3f} MiB/min after the first minute"
        if rss else "- resident memory: no samples",
        "- output latency = receive time of the labeled cloud - its stamp (same clock), per minute:",
        "",
        "| minute | labeled clouds | per s | p50 ms | p95 ms | max ms | RSS max MiB | node CPU % | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "RSS samples (t s: MiB): " + ", ".join(f"{ti:.0f}: {r:.1f}" for ti, r in zip(t, rss)),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--camera-hz", type=float, default=30.0)
    ap.add_argument("--lidar-hz", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=10.0, help="memory / counter sampling period")
    ap.add_argument("--backend", default="classical")
    ap.add_argument("--overlay", action="store_true", help="also publish overlay images (off by default)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="extra perception node parameter (repeatable)")
    ap.add_argument("--frame", default="000001", help="KITTI frame id to replay")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "kitti", help="KITTI object folder")
    ap.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID for all processes")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-append", action="store_true", help="print only, do not touch RESULTS.md")
    ap.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.publish:
        return publish(args)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
