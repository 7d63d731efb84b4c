#!/usr/bin/env python3
"""The language loop on the bundled KITTI frame: ask, see the scene-grounded answer, find objects.

Starts the perception node (SAM 3 backend) and the fusion node as their own processes, plays the
bundled KITTI frame 000001 to them over DDS (image, camera_info, extrinsic, cloud) from this
process, and then:

1. prompts the labeled objects with boxes (as an operator's clicks would), shows the per-object
   table, and asks the fusion service "what should the robot pick up?" with the scene attached;
2. clears the prompts and asks "find the cars" with publish_prompts: the fusion node publishes
   the text concepts, the perception node segments them, and the new per-object table and the
   labeled cloud follow.

Without OPENROUTER_API_KEY in the environment the fusion node talks to a local scripted
OpenRouter-compatible server on 127.0.0.1 (test/fusion/fake_openrouter.py; its members read the
scene block they are sent and answer from it), so the demo runs offline. With the key set it
uses the pools file (config/fusion_pools.yaml, default pool) against OpenRouter.

Without --checkpoint a tiny SAM 3 with random weights is built in a temporary directory: the
plumbing is real, the masks are not (score threshold 0 so its detections count). Pass a real
SAM 3 checkpoint (a local directory, or facebook/sam3 already in the Hugging Face cache) for
real masks; --device cuda if there is a GPU.

    source scripts/env.sh && python scripts/language_loop_demo.py
    OPENROUTER_API_KEY=... python scripts/language_loop_demo.py --checkpoint /models/sam3 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from samfusion.ros.processes import node_command, stop_process  # noqa: E402
KEY_ENV = "OPENROUTER_API_KEY"
OFFLINE_KEY_ENV = "SAMFUSION_DEMO_OFFLINE_KEY"
PICK_UP = "what should the robot pick up?"
FIND = "find the cars"


# ---- offline pool: a scripted OpenRouter-compatible server that reads the scene it is sent ----
_SCENE_ROW = re.compile(r'^- id (\d+) "([^"]*)".*?at \(([-\d.]+), ([-\d.]+), ([-\d.]+)\) m, ([\d.]+) m away', re.M)


def _scene_answer(body: dict[str, Any], style: str) -> str:
    """A member's answer built from the ```scene block of its prompt (nearest object first)."""
    content = str(body["messages"][-1]["content"])
    if "```scene" not in content:
        task = content.strip().splitlines()[-1] if content.strip() else ""
        return f"No scene data came with '{task}'; the segmentation node will look for what it names."
    rows = _SCENE_ROW.findall(content)
    if not rows:
        return "I cannot see any object with a 3D position, so I would not pick anything up yet."
    oid, label, x, y, z, dist = rows[0]
    if style == "short":
        return f"Object {oid} ({label})."
    return (f"Pick up object {oid}, the {label.lower()}: at ({x}, {y}, {z}) m it is the nearest "
            f"({dist} m away) of the {len(rows)} objects with a 3D position.")


def start_offline_pool(tmp: Path) -> tuple[Any, Path]:
    sys.path.insert(0, str(REPO / "test" / "fusion"))
    from fake_openrouter import FakeOpenRouter, Reply, judge_choosing

    server = FakeOpenRouter(max_stall_s=5.0).start()

    def member(style: str, concepts: list[str]) -> Callable[[dict[str, Any]], Any]:
        def respond(body: dict[str, Any]) -> Any:
            if "response_format" in body:  # the text-concept request (structured output)
                return Reply(json.dumps({"concepts": concepts}), prompt_tokens=150, completion_tokens=8,
                             cost=0.00002)
            return Reply(_scene_answer(body, style), prompt_tokens=320, completion_tokens=40, cost=0.0001)
        return respond

    server.script("offline/member-a", member("full", ["car"]))
    server.script("offline/member-b", member("short", ["car", "road"]))
    server.script("offline/judge", judge_choosing("nearest", cost=0.0002))
    pools = tmp / "offline_pools.yaml"
    pools.write_text(
        "client: {max_retries: 0}\n"
        "default_pool: offline\n"
        "pools:\n"
        "  offline: {members: [offline/member-a, offline/member-b], judge: offline/judge, judge_passes: 1,\n"
        "            timeout_s: 20.0, request_timeout_s: 30.0}\n")
    return server, pools


def tiny_sam3(tmp: Path) -> Path:
    import transformers

    from samfusion.segmentation.sam_configs import save_random_checkpoint, tiny_sam3_video_config, write_tiny_tokenizer

    transformers.logging.set_verbosity_error()
    path = save_random_checkpoint(transformers.Sam3VideoModel, tiny_sam3_video_config(), tmp / "tiny_sam3")
    write_tiny_tokenizer(path)
    return path


# ---- processes ------------------------------------------------------------------------------
# ---- printing -------------------------------------------------------------------------------
def object_table(result: Any, instance: np.ndarray) -> str:
    frame = result.cloud_header.frame_id or "cloud frame"
    lines = [f"  {'id':>3}  {'label':<10} {'score':>5} {'pixels':>7} {'points':>6}  centroid (m, in {frame})",
             "  " + "-" * 66]
    for o in result.objects:
        where = (f"({o.centroid.x:6.2f}, {o.centroid.y:6.2f}, {o.centroid.z:5.2f})" if o.point_count
                 else "no 3D points")
        lines.append(f"  {o.id:>3}  {o.label[:10]:<10} {o.score:5.2f} {o.pixel_area:7d} "
                     f"{int((instance == o.id).sum()):6d}  {where}")
    lines.append(f"  labeled cloud: {int((instance > 0).sum())} of {instance.size} points carry an instance id")
    return "\n".join(lines)


def answer_table(res: Any) -> str:
    lines = [f"  success={res.success} degraded={res.degraded} judge={res.judge_model or '-'}"]
    if res.error:
        lines.append(f"  error: {res.error}")
    lines.append(f"  answer: {res.answer}")
    for c in res.candidates:
        mark = "*" if c.selected else " "
        text = c.text.replace("\n", " ")[:70] if c.ok else f"FAILED: {c.error[:60]}"
        lines.append(f"  {mark} {c.model:<28} {c.latency_s:5.2f} s {c.prompt_tokens:5d}+{c.completion_tokens:<4d} "
                     f"${c.cost_usd:.5f}  {text}")
    if res.judge_rationale:
        lines.append(f"  judge: {res.judge_rationale[:160]}")
    lines.append(f"  total: {res.total_latency_s:.2f} s, {res.total_prompt_tokens}+{res.total_completion_tokens} "
                 f"tokens, ${res.total_cost_usd:.5f}")
    return "\n".join(lines)


# ---- the loop -------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ["ROS_DOMAIN_ID"] = str(args.domain if args.domain is not None
                                      else os.environ.get("ROS_DOMAIN_ID", os.getpid() % 100 + 1))
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_localhost.xml"))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from std_msgs.msg import Header

    from sam_fusion.msg import Box2D, Prompt, SegmentationResult
    from sam_fusion.srv import FusionQuery
    from samfusion.convert.image import numpy_to_image
    from samfusion.convert.pointcloud2 import cloud_to_structured, structured_to_cloud
    from samfusion.geometry.camera_info import camera_model_to_camera_info
    from samfusion.io.kitti import prompts_from_labels, read_kitti_frame
    from samfusion.ros.qos import LATCHED_QOS, PROMPT_QOS, RESULT_QOS, SENSOR_QOS

    tmp = Path(tempfile.mkdtemp(prefix="language-loop-"))
    online = bool(os.environ.get(KEY_ENV)) and not args.offline
    server = None
    if online:
        pools, key_env = (args.pools or REPO / "config" / "fusion_pools.yaml"), KEY_ENV
        print(f"fusion: OpenRouter with the pools file {pools} (key from ${KEY_ENV})")
    else:
        server, pools = start_offline_pool(tmp)
        key_env = OFFLINE_KEY_ENV
        os.environ[OFFLINE_KEY_ENV] = "sk-offline-demo-not-a-real-key"
        print(f"fusion: ${KEY_ENV} is not set: a scripted local pool on {server.base_url} (offline)")
    if args.checkpoint:
        checkpoint, threshold = args.checkpoint, args.score_threshold
        print(f"perception: SAM 3 from {checkpoint} on {args.device}")
    else:
        print("perception: no --checkpoint: a tiny SAM 3 with random weights (real plumbing, meaningless masks)")
        checkpoint, threshold = str(tiny_sam3(tmp)), 0.0
        os.environ.setdefault("HF_HUB_OFFLINE", "1")

    fusion_params: dict[str, Any] = {"pools_file": str(pools), "api_key_env": key_env}
    if args.pool:
        fusion_params["default_pool"] = args.pool
    if server is not None:
        fusion_params["base_url"] = server.base_url
    logs = {name: open(tmp / f"{name}.log", "w") for name in ("fusion", "perception")}
    procs = {
        "fusion": subprocess.Popen(node_command("samfusion.ros.fusion_node", fusion_params, "demo_fusion"),
                                   stdout=logs["fusion"], stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True),
        "perception": subprocess.Popen(
            node_command("samfusion.ros.perception_node",
                         {"backend": "sam3", "checkpoint": checkpoint, "device": args.device,
                          "score_threshold": threshold, "cloud_wait_s": 2.0, "max_skew_s": 0.1}, "demo_perception"),
            stdout=logs["perception"], stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True),
    }
    print(f"node logs in {tmp}")
    rclpy.init()
    node = rclpy.create_node("language_loop_demo")
    try:
        frame = read_kitti_frame(args.data, args.frame)
        pub_image = node.create_publisher(Image, "camera/image_raw", SENSOR_QOS)
        pub_info = node.create_publisher(CameraInfo, "camera/camera_info", SENSOR_QOS)
        pub_ext = node.create_publisher(TransformStamped, "camera/lidar_extrinsic", LATCHED_QOS)
        pub_cloud = node.create_publisher(PointCloud2, "points", SENSOR_QOS)
        pub_prompt = node.create_publisher(Prompt, "prompts", PROMPT_QOS)
        clouds: dict[tuple[int, int], Any] = {}
        results: dict[tuple[int, int], Any] = {}
        concepts_seen: list[list[str]] = []
        diag: dict[str, str] = {}

        def key(stamp: Any) -> tuple[int, int]:
            return stamp.sec, stamp.nanosec

        def on_result(msg: Any) -> None:
            if any(o.point_count for o in msg.objects) or key(msg.header.stamp) not in results:
                results[key(msg.header.stamp)] = msg

        def on_diag(msg: Any) -> None:
            for s in msg.status:
                if s.name.startswith("demo_perception"):
                    diag.update({kv.key: kv.value for kv in s.values})

        node.create_subscription(PointCloud2, "points_labeled", lambda m: clouds.__setitem__(key(m.header.stamp), m),
                                 RESULT_QOS)
        node.create_subscription(SegmentationResult, "camera/segmentation", on_result, RESULT_QOS)
        node.create_subscription(Prompt, "prompts", lambda m: m.text_concepts and concepts_seen.append(list(m.text_concepts)),
                                 PROMPT_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, RESULT_QOS)
        client = node.create_client(FusionQuery, "fusion_query")

        def spin_until(predicate: Callable[[], bool], timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if predicate():
                    return True
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"the {name} node exited ({proc.returncode}); see {tmp / (name + '.log')}")
                rclpy.spin_once(node, timeout_sec=0.05)
            return predicate()

        print("waiting for the nodes (model loading) ...")
        if not spin_until(lambda: client.service_is_ready() and diag.get("model_loaded") == "True"
                          and pub_cloud.get_subscription_count() > 0, args.timeout):
            raise RuntimeError(f"nodes not ready after {args.timeout:g} s; see the logs in {tmp}")

        def send_frame() -> tuple[Any, Any]:
            """Play the frame until its cloud comes back labeled; (labeled cloud, result with 3D)."""
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                stamp = node.get_clock().now().to_msg()
                cam, lidar = Header(stamp=stamp, frame_id="camera_2_optical"), Header(stamp=stamp, frame_id="velodyne")
                t, q = frame.calib.T_cam_from_velo.to_translation_quaternion()
                ext = TransformStamped(header=cam, child_frame_id="velodyne")
                ext.transform.translation.x, ext.transform.translation.y, ext.transform.translation.z = map(float, t)
                r = ext.transform.rotation
                r.x, r.y, r.z, r.w = map(float, q)
                pub_ext.publish(ext)
                pub_info.publish(camera_model_to_camera_info(frame.calib.camera_model, CameraInfo, cam))
                pub_image.publish(numpy_to_image(frame.image, "rgb8", Image, cam))
                pub_cloud.publish(structured_to_cloud(frame.cloud, PointCloud2, PointField, lidar))
                k = key(stamp)
                if spin_until(lambda: k in clouds and k in results and any(o.point_count for o in results[k].objects),
                              min(30.0, args.timeout)):
                    return clouds[k], results[k]
                if k in clouds and k in results:  # came back without 3D objects: (again, once camera_info is in)
                    continue
            raise RuntimeError("no labeled frame came back")

        def ask(query: str, **fields: Any) -> Any:
            req = FusionQuery.Request(query=query, **fields)
            future = client.call_async(req)
            if not spin_until(future.done, args.timeout):
                raise RuntimeError(f"no answer to {query!r}")
            return future.result()

        # 1. boxes on the labeled objects, then a question about the scene
        for update in prompts_from_labels(frame.labels, target="camera"):
            pub_prompt.publish(Prompt(target="camera", action=int(update.action), object_id=update.object_id,
                                      label=update.label,
                                      boxes=[Box2D(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max,
                                                   positive=True) for b in update.boxes]))
        spin_until(lambda: False, 0.5)
        cloud, result = send_frame()
        print(f"\n== KITTI {args.frame}, objects prompted with boxes from the labels")
        print(object_table(result, cloud_to_structured(cloud)["instance"]))
        print(f"\n== ask: {PICK_UP!r} (include_scene)")
        print(answer_table(ask(PICK_UP, include_scene=True)))

        # 2. find a class of object: concepts published, masks and labeled cloud follow
        pub_prompt.publish(Prompt(target="camera", action=Prompt.ACTION_CLEAR))
        applied = int(diag.get("prompts_applied", "0"))
        spin_until(lambda: int(diag.get("prompts_applied", "0")) > applied, 10)
        print(f"\n== ask: {FIND!r} (publish_prompts)")
        res = ask(FIND, publish_prompts=True)
        print(answer_table(res))
        print(f"  published concepts: {list(res.published_concepts)}")
        if not res.published_concepts:
            return 1
        spin_until(lambda: bool(concepts_seen), 10)
        print(f"  Prompt seen on /prompts: text_concepts={concepts_seen[-1] if concepts_seen else '(none)'}")
        applied = int(diag.get("prompts_applied", "0"))
        spin_until(lambda: int(diag.get("prompts_applied", "0")) > applied, 10)
        cloud, result = send_frame()
        print(f"\n== KITTI {args.frame}, after the concepts {list(res.published_concepts)}")
        print(object_table(result, cloud_to_structured(cloud)["instance"]))
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for proc in procs.values():
            stop_process(proc)
        for fh in logs.values():
            fh.close()
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="", help="SAM 3 checkpoint (directory or cached hub id); "
                    "empty = a tiny random one")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--score-threshold", type=float, default=0.5, help="with --checkpoint (random: 0)")
    ap.add_argument("--pools", type=Path, default=None, help="pools file with a key (default config/fusion_pools.yaml)")
    ap.add_argument("--pool", default="", help="pool name (default: the file's default_pool)")
    ap.add_argument("--offline", action="store_true", help="use the scripted local pool even with a key set")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "kitti", help="KITTI object folder")
    ap.add_argument("--frame", default="000001")
    ap.add_argument("--domain", type=int, default=None, help="ROS_DOMAIN_ID (default $ROS_DOMAIN_ID or from the pid)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for models, frames, answers")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except RuntimeError as exc:
        print(f"language_loop_demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
