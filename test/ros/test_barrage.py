"""Bad-input barrage over real DDS: malformed images, clouds, camera infos and prompts mixed
with good KITTI frames for about 20 s.

The bad messages come from a seeded generator (deterministic content; the interleaving with
DDS delivery is not), each one checked here against the same core conversion the node uses, so
"bad" really means "the node must refuse it". The node must stay up, label every good frame
that comes back exactly as it does without the barrage (or, if that frame's image was lost on
the way, publish its cloud unlabeled and count it), and count what it refused. Sensor
topics are best effort, so the node may not receive everything; its own diagnostics say how
many images and clouds it received, and every received one must be accounted for exactly once
(segmented / labeled, skipped / dropped as stale, or refused). From that and what this process
sent, a lower bound on the refusals follows that no broken counter can meet.
"""

from __future__ import annotations

import copy
import math
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

from ros_harness import REPO_ROOT, ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until

pytestmark = [requires_ros, pytest.mark.ros, pytest.mark.slow,
              # the guard decodes random valid layouts too: casting random bytes may overflow
              pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

if ROS_AVAILABLE:
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
    from std_msgs.msg import Header

    from sam_fusion.msg import Box2D, PixelPoint, Prompt
    from samfusion.convert.image import image_to_rgb
    from samfusion.convert.pointcloud2 import cloud_to_structured, xyz_array
    from samfusion.errors import SamFusionError
    from samfusion.geometry.camera_info import camera_info_to_model, camera_model_to_camera_info
    from samfusion.io.kitti import read_kitti_frame
    from samfusion.ros.adapters import prompt_from_msg
    from test_perception_node import Rig

NODE = "samfusion.ros.perception_node"
SEED = 6_2024
BARRAGE_S = 20.0
CYCLE_S = 1.0  # one good frame per cycle, bad messages in between
GAP_S = 0.05  # between two bad messages
IMAGE_W, IMAGE_H = 1242, 375  # KITTI 000001
_FLOAT32, _FLOAT64, _UINT8, _UINT16, _UINT32 = 7, 8, 2, 4, 6
_SIZES = {_FLOAT32: 4, _FLOAT64: 8, _UINT8: 1, _UINT16: 2, _UINT32: 4}


def _stamp(seconds: float) -> Time:
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def _seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


# ---- generators: every message is bad for a stated reason ------------------------------------
def bad_image(rng: random.Random, header: Header) -> Image:
    """Unknown encoding, truncated data, step < row bytes, zero size or a huge claimed size."""
    encoding, channels, depth = rng.choice([("rgb8", 3, 1), ("bgr8", 3, 1), ("mono8", 1, 1),
                                            ("mono16", 1, 2), ("rgba8", 4, 1), ("32FC1", 1, 4)])
    width, height = rng.randint(1, 64), rng.randint(1, 48)
    msg = Image(header=header, encoding=encoding, width=width, height=height,
                step=width * channels * depth, is_bigendian=0)
    full = rng.randbytes(msg.step * height)
    defect = rng.choice(["encoding", "truncated", "step", "zero", "huge"])
    msg.data = full
    if defect == "encoding":
        msg.encoding = rng.choice(["", "rgb_fancy", "16UC7"]) + "".join(
            rng.choice(string.ascii_lowercase) for _ in range(rng.randint(0, 6)))
    elif defect == "truncated":
        msg.data = full[: rng.randrange(0, len(full) - width * channels * depth + 1)]
    elif defect == "step":
        msg.step = rng.randrange(0, width * channels * depth)
    elif defect == "zero":
        msg.width, msg.height, msg.step, msg.data = rng.choice([(0, height), (width, 0), (0, 0)]) + (0, b"")
    else:  # a size no buffer was sent for
        msg.width, msg.height = rng.choice([(100_000, 100_000), (2**31 - 1, 1), (1, 2**31 - 1)])
        msg.step = min(msg.width * channels * depth, 2**32 - 1)
    return msg


def _layout(rng: random.Random) -> tuple[list[Any], int]:
    names = ["x", "y", "z"] + rng.sample(["intensity", "ring", "t", "reflectivity"], rng.randint(0, 3))
    fields, offset = [], 0
    for name in names:
        datatype = rng.choice([_FLOAT32, _FLOAT32, _FLOAT64, _UINT8, _UINT16, _UINT32])
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=1))
        offset += _SIZES[datatype]
    return fields, offset


def bad_cloud(rng: random.Random, header: Header) -> tuple[PointCloud2, str]:
    """A cloud and its class: 'bad' (must be refused) or 'edge' (NaN-only / empty: valid, no labels)."""
    fields, step = _layout(rng)
    width = rng.randint(1, 400)
    msg = PointCloud2(header=header, height=1, width=width, fields=fields, point_step=step,
                      row_step=width * step, is_bigendian=False, is_dense=False)
    msg.data = rng.randbytes(width * step)
    defect = rng.choice(["past_step", "overlap", "datatype", "duplicate", "no_z", "truncated",
                         "huge", "zero_step", "row_step", "nan_only", "empty"])
    if defect == "past_step":
        fields[-1].offset = step + rng.randint(0, 8)
    elif defect == "overlap":
        k = rng.randrange(1, len(fields))
        fields[k].offset = fields[k - 1].offset  # starts inside the previous field
    elif defect == "datatype":
        rng.choice(fields).datatype = rng.choice([0, 9, 42, 255])
    elif defect == "duplicate":
        fields[rng.randrange(1, len(fields))].name = "x"
    elif defect == "no_z":
        msg.fields = [f for f in fields if f.name != "z"]
    elif defect == "truncated":
        msg.data = msg.data[: rng.randrange(0, len(msg.data))]
    elif defect == "huge":
        msg.width = rng.choice([2**32 - 1, 10**9])
        msg.row_step = (msg.width * step) % 2**32
    elif defect == "zero_step":
        msg.point_step = 0
    elif defect == "row_step":
        msg.height, msg.width = 2, width // 2 + 1
        msg.row_step = rng.randrange(0, msg.width * step)
    elif defect == "nan_only":
        xyz = [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1) for i, n in enumerate("xyz")]
        msg.fields, msg.point_step, msg.row_step = xyz, 12, 12 * width
        msg.data = np.full(3 * width, np.nan, np.float32).tobytes()
        return msg, "edge"
    else:
        msg.width, msg.row_step, msg.data = 0, 0, b""
        return msg, "edge"
    return msg, "bad"


def bad_camera_info(rng: random.Random, good: CameraInfo) -> CameraInfo:
    msg = copy.deepcopy(good)
    defect = rng.choice(["k_zero", "p_zero", "model", "d_count", "nan", "size"])
    if defect == "k_zero":
        msg.k = [0.0] * 9
    elif defect == "p_zero":
        msg.p = [0.0] * 12
    elif defect == "model":
        msg.distortion_model = rng.choice(["fisheye9", "kannala", "plumb bob"])
    elif defect == "d_count":
        msg.distortion_model, msg.d = "plumb_bob", [0.01] * rng.choice([1, 3, 4, 6, 9])
    elif defect == "nan":
        k = list(msg.k)
        k[rng.choice([0, 2, 4, 5])] = rng.choice([math.nan, math.inf])
        msg.k = k
    else:
        msg.width, msg.height = rng.choice([(0, IMAGE_H), (IMAGE_W, 0), (0, 0)])
    return msg


def bad_prompt(rng: random.Random) -> Prompt:
    """Unknown ids, outside the image, bad actions, mismatched points_3d, and other refusals."""
    inside = PixelPoint(x=float(rng.uniform(0, IMAGE_W - 1)), y=float(rng.uniform(0, IMAGE_H - 1)), positive=True)
    unknown = rng.randint(100, 60000)
    defect = rng.choice(["refine_unknown", "remove_unknown", "outside_point", "outside_box", "action",
                         "points_3d", "target", "duplicate_id", "two_boxes", "empty_add"])
    msg = Prompt(target="camera", action=Prompt.ACTION_ADD, object_id=0)
    if defect == "refine_unknown":
        msg.action, msg.object_id, msg.points = Prompt.ACTION_REFINE, unknown, [inside]
    elif defect == "remove_unknown":
        msg.action, msg.object_id = Prompt.ACTION_REMOVE, unknown
    elif defect == "outside_point":
        msg.object_id = rng.choice([0, unknown])
        msg.points = [PixelPoint(x=float(rng.choice([-50.0, IMAGE_W + rng.uniform(1, 4000)])),
                                 y=float(rng.uniform(0, IMAGE_H)), positive=True)]
    elif defect == "outside_box":
        x0 = float(IMAGE_W + rng.uniform(5, 500))
        msg.boxes = [Box2D(x_min=x0, y_min=10.0, x_max=x0 + 40.0, y_max=60.0, positive=True)]
    elif defect == "action":
        msg.action = rng.randint(5, 255)
    elif defect == "points_3d":
        n = rng.randint(1, 4)
        msg.points_3d = [Point(x=10.0, y=0.0, z=0.0)] * n
        msg.points_3d_positive = [True] * rng.choice([k for k in range(0, 6) if k != n])
        msg.header.frame_id = "velodyne"
    elif defect == "target":
        msg.target, msg.action = "no_such_camera_" + str(unknown), rng.choice([Prompt.ACTION_CLEAR, Prompt.ACTION_ADD])
        msg.points = [inside]
    elif defect == "duplicate_id":
        msg.object_id, msg.points = rng.choice([1, 2, 3]), [inside]
    elif defect == "two_boxes":
        msg.boxes = [Box2D(x_min=1.0, y_min=1.0, x_max=20.0, y_max=20.0, positive=True)] * 2
    else:  # ADD with nothing to add
        msg.object_id = unknown
    return msg


def _is_refused(convert: Callable[[], Any]) -> bool:
    try:
        out = convert()
    except SamFusionError:
        return True
    return getattr(out, "size", 1) == 0  # an empty image decodes, and the pipeline refuses it


# ---- the run ------------------------------------------------------------------------------
@dataclass
class Sent:
    good_frames: list[Time] = field(default_factory=list)
    images: int = 0
    clouds: int = 0
    edge_clouds: dict[tuple[int, int], int] = field(default_factory=dict)  # stamp -> width
    camera_infos: int = 0
    prompts: int = 0


def _key(stamp: Time) -> tuple[int, int]:
    return stamp.sec, stamp.nanosec


IMAGE_KEYS = ("images_received", "frames_segmented", "bad_image", "images_skipped")
CLOUD_KEYS = ("clouds_received", "clouds_labeled", "bad_cloud", "clouds_dropped")


def _settled(diag: dict[str, str]) -> bool:
    """Every received image and cloud is accounted for (nothing still pending in the node)."""
    c = {k: int(diag.get(k, "0")) for k in IMAGE_KEYS + CLOUD_KEYS}
    return (c["images_received"] == c["frames_segmented"] + c["bad_image"] + c["images_skipped"]
            and c["clouds_received"] == c["clouds_labeled"] + c["bad_cloud"] + c["clouds_dropped"])


def test_bad_input_barrage_mixed_with_good_frames() -> None:
    frame = read_kitti_frame(REPO_ROOT / "data" / "kitti", "000001")
    rng = random.Random(SEED)
    params = {"cloud_wait_s": 1.0, "max_skew_s": 0.1, "log_throttle_s": 1.0, "publish_overlay": False}
    with node_process(NODE, "perception_barrage", params=params) as proc, \
            probe_node("barrage_probe") as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        rig.send_prompts(frame)
        spin_until(executor, lambda: False, 0.5)
        warm = rig.frame_until_labeled(frame)
        assert set(np.unique(cloud_to_structured(warm)["instance"])) == {0, 1, 2, 3}
        n_clouds = len(rig.clouds)
        # a diagnostics message that already reflects the warm-up and nothing pending
        assert spin_until(executor, lambda: int(rig.diagnostics.get("clouds_received", "0")) >= n_clouds
                          and _settled(rig.diagnostics), 15), rig.diagnostics
        before = dict(rig.diagnostics)

        cam = Header(frame_id="camera_2_optical")
        good_info = camera_model_to_camera_info(frame.calib.camera_model, CameraInfo, cam)
        sent = Sent()
        clouds_back = {_key(c.header.stamp) for c in rig.clouds}
        pending_clouds: list[tuple[PointCloud2, str]] = []
        end = time.monotonic() + BARRAGE_S
        while time.monotonic() < end:
            stamp = node.get_clock().now().to_msg()
            rig.send_frame(frame, stamp)
            sent.good_frames.append(stamp)
            sent.images += 1
            sent.clouds += 1
            cycle_end = time.monotonic() + CYCLE_S
            j = 0
            while time.monotonic() < cycle_end:
                clouds_back.update(_key(c.header.stamp) for c in rig.clouds[n_clouds:])
                n_clouds = len(rig.clouds)
                kind = rng.choice(["image", "image", "cloud", "cloud", "info", "prompt", "prompt"])
                if kind == "image":  # stamped before every good frame: never makes a good one stale
                    old = Header(stamp=_stamp(_seconds(stamp) - 30.0 - rng.uniform(0, 1000)),
                                 frame_id=rng.choice(["camera_2_optical", ""]))
                    msg = bad_image(rng, old)
                    assert _is_refused(lambda: image_to_rgb(msg)), msg
                    rig.image.publish(msg)
                    sent.images += 1
                elif kind == "cloud":
                    j += 1  # stamped next to the segmented good frame: refused at once, no waiting
                    lidar = Header(stamp=_stamp(_seconds(stamp) + j * 1e-4), frame_id="velodyne")
                    pending_clouds.append(bad_cloud(rng, lidar))
                    if _key(stamp) in clouds_back:  # never replace a good cloud that is still pending
                        for msg, what in pending_clouds:
                            msg.header.stamp = lidar.stamp
                            if what == "edge":
                                sent.edge_clouds[_key(lidar.stamp)] = msg.width
                            else:
                                assert _is_refused(lambda: xyz_array(cloud_to_structured(msg))), msg
                            rig.cloud.publish(msg)
                            sent.clouds += 1
                            j += 1
                            lidar = Header(stamp=_stamp(_seconds(stamp) + j * 1e-4), frame_id="velodyne")
                        pending_clouds.clear()
                elif kind == "info":
                    msg = bad_camera_info(rng, good_info)
                    assert _is_refused(lambda: camera_info_to_model(msg)), msg
                    rig.info.publish(msg)
                    sent.camera_infos += 1
                else:
                    rig.prompt.publish(bad_prompt(rng))
                    sent.prompts += 1
                spin_until(executor, lambda: False, GAP_S)

        assert spin_until(executor, lambda: _settled(rig.diagnostics) and int(rig.diagnostics.get("bad_prompt", "0"))
                          - int(before.get("bad_prompt", "0")) >= sent.prompts, 20), rig.diagnostics
        spin_until(executor, lambda: False, 1.5)  # one more diagnostics message: nothing moves any more
        assert _settled(rig.diagnostics), rig.diagnostics
        assert proc.alive(), proc.output()[-3000:]
        after = rig.diagnostics
        d = {k: int(after.get(k, "0")) - int(before.get(k, "0"))
             for k in set(after) | set(before) if after.get(k, before.get(k, "")).lstrip("-").isdigit()}
        print(f"sent: {sent.images} images ({len(sent.good_frames)} good), {sent.clouds} clouds "
              f"({len(sent.edge_clouds)} NaN-only/empty), {sent.camera_infos} camera infos, "
              f"{sent.prompts} prompts; node counters grew by {dict(sorted(d.items()))}")

        # Good frames: every one that came back is labeled as without the barrage.
        good = {_key(s) for s in sent.good_frames}
        returned = [c for c in rig.clouds if _key(c.header.stamp) in good]
        assert len(returned) >= len(sent.good_frames) // 2, (len(returned), len(sent.good_frames))
        # Malformed images are refused in the callback and never push a good frame out of the
        # node's latest-frame buffer. A good cloud can only come back unlabeled (flagged and
        # counted) when its image never reached the segmenter (best-effort transport may lose it).
        unlabeled = []
        for cloud in returned:
            ids = set(np.unique(cloud_to_structured(cloud)["instance"]).tolist())
            assert ids in ({0, 1, 2, 3}, {0}), (cloud.header.stamp, ids)
            if ids == {0}:
                unlabeled.append(cloud.header.stamp)
        assert len(unlabeled) <= len(sent.good_frames) - d.get("frames_segmented", 0), (unlabeled, d)
        assert len(unlabeled) <= d.get("clouds_unlabeled", 0), (unlabeled, d)
        assert len(returned) - len(unlabeled) >= len(sent.good_frames) // 2, (len(unlabeled), len(returned))
        # NaN-only and empty clouds are valid input: published back with no labels at all.
        for cloud in rig.clouds:
            width = sent.edge_clouds.get(_key(cloud.header.stamp))
            if width is not None:
                assert cloud.width == width and not cloud_to_structured(cloud)["instance"].any()

        # Prompts are reliable: every bad one was received and refused, none applied.
        assert d.get("bad_prompt", 0) == sent.prompts
        assert d.get("prompts_applied", 0) == 0
        # Images: what the node received beyond the good frames, less what it skipped as stale,
        # it must have refused (bad images carry old stamps, so no good image is ever skipped).
        assert 0 < d["images_received"] <= sent.images
        assert d["frames_segmented"] <= len(sent.good_frames)
        assert d["bad_image"] >= d["images_received"] - len(sent.good_frames) - d["images_skipped"]
        assert d["bad_image"] >= (sent.images - len(sent.good_frames)) // 2
        assert d["bad_image"] <= sent.images - len(sent.good_frames)
        # Clouds: likewise, with replaced (dropped) clouds and the valid NaN-only / empty ones.
        assert 0 < d["clouds_received"] <= sent.clouds
        bad_clouds_sent = sent.clouds - len(sent.good_frames) - len(sent.edge_clouds)
        assert d["bad_cloud"] >= (d["clouds_received"] - len(sent.good_frames) - len(sent.edge_clouds)
                                  - d["clouds_dropped"])
        assert d["bad_cloud"] >= bad_clouds_sent // 2
        assert d["bad_cloud"] <= bad_clouds_sent
        # Camera infos are refused on arrival; best effort allows some loss, but not half.
        assert sent.camera_infos // 2 <= d.get("bad_camera_info", 0) <= sent.camera_infos
        assert d.get("worker_errors", 0) == 0, proc.output()[-3000:]
        assert after["model_loaded"] == "True"
        log = proc.output()
        assert "Traceback" not in log
        for kind in ("bad_image", "bad_cloud", "bad_camera_info", "bad_prompt"):
            assert f"{kind}: " in log


def test_a_refused_empty_image_leaves_prompt_checks_alone() -> None:
    """A refused 0x0 image must not become the size that prompts are checked against."""
    frame = read_kitti_frame(REPO_ROOT / "data" / "kitti", "000001")
    params = {"cloud_wait_s": 1.0, "max_skew_s": 0.1, "log_throttle_s": 0.0, "publish_overlay": False}
    with node_process(NODE, "perception_empty_image", params=params) as proc, probe_node() as (node, executor):
        rig = Rig(node, executor)
        rig.wait_ready()
        rig.send_prompts(frame)
        spin_until(executor, lambda: False, 0.5)
        rig.frame_until_labeled(frame)  # the node now knows the 1242x375 image
        rig.image.publish(Image(header=Header(stamp=node.get_clock().now().to_msg()), encoding="rgb8",
                                width=0, height=0, step=0))
        assert spin_until(executor, lambda: rig.counter("bad_image") >= 1, 10), rig.diagnostics
        applied, refused = rig.counter("prompts_applied"), rig.counter("bad_prompt")
        rig.prompt.publish(Prompt(target="camera", action=Prompt.ACTION_ADD, object_id=9, label="Pole",
                                  points=[PixelPoint(x=600.0, y=200.0, positive=True)]))
        assert spin_until(executor, lambda: rig.counter("prompts_applied") > applied
                          or rig.counter("bad_prompt") > refused, 10), rig.diagnostics
        assert proc.alive()
        assert rig.counter("bad_prompt") == refused, proc.output()[-1000:]
        assert rig.counter("prompts_applied") == applied + 1
