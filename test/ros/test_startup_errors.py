"""Nodes and the demo refuse bad configuration with one line and exit status 2, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ros_harness import REPO_ROOT, node_env, requires_ros

pytestmark = [requires_ros, pytest.mark.ros]


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=node_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module, args, message", [
    ("samfusion.ros.perception_node", ["-p", "score_threshold:=5.0"],
     "sam_fusion sam_fusion_perception: Invalid parameter value (5.0) for parameter. Reason: Parameter score_threshold out of range"),
    ("samfusion.ros.perception_node", ["--params-file", "/nonexistent/params.yaml"],
     "sam_fusion sam_fusion_perception: failed to initialize rcl: Couldn't parse params file"),
    ("samfusion.ros.kitti_player", ["-p", "data_dir:=/nonexistent"],
     "sam_fusion kitti_player: no complete KITTI frames (image_2 + velodyne + calib) under /nonexistent"),
    ("samfusion.ros.kitti_player", ["-p", "rate_hz:=0.0"], "sam_fusion kitti_player: Invalid parameter value (0.0) for parameter. Reason: Parameter rate_hz out of range"),
])
def test_bad_node_configuration_is_one_line_and_status_2(module, args, message):
    proc = _run(module, "--ros-args", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("sam_fusion ")]
    assert len(ours) == 1 and ours[0].startswith(message), proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent"], "demo: no complete KITTI frames (image_2 + velodyne + calib) under /nonexistent"),
    (["--rate", "-1"], "argument --rate: must be a positive number, got -1"),
    (["--timeout", "0"], "argument --timeout: must be a positive number, got 0"),
])
def test_demo_refuses_bad_arguments_before_starting_nodes(tmp_path, args, message):
    proc = _run("samfusion.ros.demo", "--out", str(tmp_path / "demo"), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "demo" / "perception_node.log").exists()  # nothing was started


def test_demo_reports_a_node_that_refused_its_parameters_and_clears_old_results(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "000000_overlay.png").write_bytes(b"an earlier run")
    (out / "summary.json").write_text("{}")
    proc = _run("samfusion.ros.demo", "--out", str(out), "--backend", "nonsense", "--timeout", "60")
    assert proc.returncode == 1, proc.stderr
    assert "demo failed: the perception node exited" in proc.stderr
    assert "backend='nonsense' is not one of" in proc.stderr  # the node's own line, from its log
    assert sorted(p.name for p in out.iterdir()) == ["perception_node.log"]


def test_unknown_parameters_are_named_in_a_warning():
    import time

    from samfusion.ros.processes import node_command, stop_process

    cmd = node_command("samfusion.ros.perception_node", {"backend": "classical", "score_treshold": 0.3})
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=node_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "loaded classical" in line:  # start-up finished
                break
    finally:
        stop_process(proc, timeout=10)
    text = "".join(lines)
    assert "ignoring unknown parameter(s) ['score_treshold']: this node has no such parameter (a typo?)" in text, text
