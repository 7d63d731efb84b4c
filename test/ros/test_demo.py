"""The README's main job end to end: KITTI player -> perception node -> recorder, over DDS."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ros_harness import REPO_ROOT, node_env, requires_ros

pytestmark = [requires_ros, pytest.mark.ros, pytest.mark.slow]


def test_demo_writes_overlays_clouds_and_summary(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "samfusion.ros.demo", "--out", str(out), "--rate", "1.0",
                           "--timeout", "150"], cwd=REPO_ROOT, env=node_env(), capture_output=True,
                          text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    frames = {f["frame"]: f for f in summary["frames"]}
    assert sorted(frames) == ["000000", "000001", "000002"]
    assert [(o["id"], o["label"]) for o in frames["000001"]["objects"]] == [(1, "Truck"), (2, "Car"), (3, "Cyclist")]
    assert [(o["id"], o["label"]) for o in frames["000002"]["objects"]] == [(1, "Misc"), (2, "Car")]
    pedestrian = frames["000000"]["objects"][0]  # the first frame too: camera_info may trail the image
    assert pedestrian["label"] == "Pedestrian" and pedestrian["points"] >= 250 and pedestrian["precision"] >= 0.85
    truck = frames["000001"]["objects"][0]
    assert 60 <= truck["points"] <= 72 and truck["precision"] >= 0.9  # 72 points in its 3D box
    assert 55 < truck["centroid"][0] < 70
    for name in ("000000_overlay.png", "000001_points.png", "000002_labeled.pcd", "kitti_player.log"):
        assert (out / name).stat().st_size > 0
    from samfusion.convert.pcd_io import read_pcd

    cloud = read_pcd(out / "000001_labeled.pcd")
    assert cloud.dtype.names == ("x", "y", "z", "intensity", "label", "instance", "score")
    assert len(cloud) == 120268
    assert int((cloud["instance"] == 1).sum()) == truck["points"]
    assert np.isclose(summary["accuracy"]["objects"], 6)
    assert "point accuracy vs KITTI 3D boxes" in proc.stdout and str(out) in proc.stdout

    # Over DDS the nodes label exactly what the offline core labels from the same files: every
    # frame is segmented with its own prompts and projected with its own calibration (frame
    # 000000's calibration differs from the others', so a stale CameraInfo would show here).
    offline = subprocess.run([sys.executable, "-m", "samfusion.cli", "kitti", str(REPO_ROOT / "data" / "kitti"),
                              "--json"], cwd=REPO_ROOT, env=node_env(), capture_output=True, text=True, timeout=300)
    assert offline.returncode == 0, offline.stderr
    expected = {(o["frame"], o["object_id"]): o["labeled_points"] for o in json.loads(offline.stdout)["objects"]}
    got = {(f, o["id"]): o["points"] for f, frame in frames.items() for o in frame["objects"]}
    assert got == expected


def test_demo_stops_early_and_says_why_when_the_model_does_not_load(tmp_path):
    out = tmp_path / "demo"
    missing = tmp_path / "no_such_checkpoint"
    proc = subprocess.run([sys.executable, "-m", "samfusion.ros.demo", "--out", str(out), "--backend", "sam2",
                           "--checkpoint", str(missing), "--timeout", "150"], cwd=REPO_ROOT, env=node_env(),
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "demo failed: the perception node could not load its sam2 model" in proc.stderr
    assert str(missing) in proc.stderr  # the node's own error, from its log, names the checkpoint
    assert "timed out" not in proc.stderr and not (out / "summary.json").exists()
