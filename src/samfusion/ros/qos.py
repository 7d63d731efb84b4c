"""QoS profiles: sensor data for camera / LiDAR inputs, reliable for results and prompts."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

__all__ = ["SENSOR_QOS", "RESULT_QOS", "PROMPT_QOS", "LATCHED_QOS", "LOG_QOS"]

# Best effort, keep last 5: never blocks a driver, never queues stale frames.
SENSOR_QOS: QoSProfile = qos_profile_sensor_data
# Reliable, keep last few: results go to rviz, recorders and perception stacks.
RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Prompts are commands: reliable and deep enough that a burst (CLEAR + several ADDs) is kept.
PROMPT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
# Calibration-like data: the last value is delivered to late joiners.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
# A short history that late joiners still receive (the player's stamp -> frame log).
LOG_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
