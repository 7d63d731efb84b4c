"""The KITTI player over real DDS: lockstep pacing on a result topic (``pace_topic``)."""

from __future__ import annotations

import time

import pytest

from ros_harness import ROS_AVAILABLE, node_process, probe_node, requires_ros, spin_until

pytestmark = [requires_ros, pytest.mark.ros]

if ROS_AVAILABLE:
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from samfusion.ros.qos import LOG_QOS, RESULT_QOS, SENSOR_QOS

PLAYER = "samfusion.ros.kitti_player"


def test_paced_player_waits_for_each_result_then_times_out_on_a_missing_one() -> None:
    """Frame n+1 goes out only after the result of frame n (or after pace_timeout_s, warned)."""
    params = {"rate_hz": 50.0, "prompt_lead_s": 0.0, "publish_prompts": False,
              "pace_topic": "paced_result", "pace_timeout_s": 2.0}
    with probe_node("player_probe") as (node, executor):
        frames: list[tuple[str, tuple[int, int], float]] = []  # frame id, stamp, arrival
        clouds: list[PointCloud2] = []
        node.create_subscription(String, "kitti_player/frames", lambda m: frames.append(
            (m.data.split()[0], (int(m.data.split()[1]), int(m.data.split()[2])), time.monotonic())), LOG_QOS)
        node.create_subscription(PointCloud2, "points", clouds.append, SENSOR_QOS)
        answer = node.create_publisher(PointCloud2, "paced_result", RESULT_QOS)
        with node_process(PLAYER, "paced_player", params=params) as proc:
            assert spin_until(executor, lambda: answer.get_subscription_count() >= 1, 30), proc.output()
            assert spin_until(executor, lambda: len(frames) >= 1, 60), proc.output()
            # Without an answer the player holds the next frame (well within pace_timeout_s = 2 s).
            spin_until(executor, lambda: False, 1.0)
            assert [f[0] for f in frames] == ["000000"], frames
            # A result with another stamp does not release it; the frame's own stamp does.
            wrong = PointCloud2()
            wrong.header.stamp.sec, wrong.header.stamp.nanosec = frames[0][1][0] + 1, frames[0][1][1]
            answer.publish(wrong)
            spin_until(executor, lambda: False, 0.5)
            assert len(frames) == 1, frames
            released = time.monotonic()
            right = PointCloud2()
            right.header.stamp.sec, right.header.stamp.nanosec = frames[0][1]
            answer.publish(right)
            assert spin_until(executor, lambda: len(frames) >= 2, 10), proc.output()
            assert frames[1][0] == "000001" and frames[1][2] - released < 1.5, frames
            # No answer for 000001: after pace_timeout_s the player warns and plays 000002.
            assert spin_until(executor, lambda: len(frames) >= 3, 15), proc.output()
            assert frames[2][0] == "000002" and frames[2][2] - frames[1][2] >= 1.9, frames
            assert spin_until(executor, lambda: "no message with stamp" in proc.output(), 5), proc.output()
            warning = next(line for line in proc.output().splitlines() if "no message with stamp" in line)
            stamp = f"{frames[1][1][0]}.{frames[1][1][1]:09d}"
            assert f"no message with stamp {stamp} on 'paced_result' within pace_timeout_s=2" in warning
            assert "(1 missed so far)" in warning
            # the clouds carry the frames' stamps (the pacing key; best effort, so some may be lost)
            assert clouds and {(c.header.stamp.sec, c.header.stamp.nanosec) for c in clouds} <= {f[1] for f in frames}
            # answering the last frame lets the player finish
            last = PointCloud2()
            last.header.stamp.sec, last.header.stamp.nanosec = frames[2][1]
            answer.publish(last)
            assert spin_until(executor, lambda: "all frames played" in proc.output(), 10), proc.output()
            assert len(frames) == 3
