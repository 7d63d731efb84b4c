"""Demo without a robot: the bundled KITTI frames played as live sensors, perception, rviz2.

The KITTI player publishes image, camera_info, the camera <- LiDAR extrinsic (latched), the
cloud and one box prompt per labeled object; the perception node segments and labels the
cloud; rviz2 shows the overlay, the cloud colored by label and the 3D boxes. Arguments: every
player and perception parameter (shared names such as ``lidar_topic`` feed both nodes), the
common ones and ``rviz`` / ``rviz_config``. The demo plays in a loop (``loop`` defaults to true
here; the player's own default is false).

    ros2 launch sam_fusion kitti_demo.launch.py
    ros2 launch sam_fusion kitti_demo.launch.py data_dir:=/data/kitti/training rate_hz:=2.0
"""

from __future__ import annotations

from pathlib import Path

from samfusion.launch_args import (
    launch_arguments,
    merge_arguments,
    parameter_arguments,
    rviz_arguments,
)
from samfusion.ros.kitti_player import PLAYER_PARAMS
from samfusion.ros.perception_params import PERCEPTION_PARAMS

SHARE = Path(__file__).resolve().parent.parent  # share/sam_fusion (or the source tree)
PLAYER_EXECUTABLE = "kitti_player"
PERCEPTION_EXECUTABLE = "perception_node"
PARAMS_FILE = SHARE / "config" / "perception.yaml"
RVIZ_CONFIG = SHARE / "config" / "rviz" / "sam_fusion.rviz"
DEMO_DEFAULTS = {"loop": True}

ARGUMENTS = merge_arguments(
    launch_arguments(PERCEPTION_PARAMS, params_file=str(PARAMS_FILE), node="the perception node"),
    parameter_arguments(PLAYER_PARAMS, defaults=DEMO_DEFAULTS),
    rviz_arguments(str(RVIZ_CONFIG), enabled=True),
)


def generate_launch_description():  # noqa: ANN201 - launch's own entry point
    from launch import LaunchDescription

    from samfusion.ros.launch_actions import (
        declare,
        deferred,
        launch_values,
        node_action,
        rviz_node,
    )

    def setup(context):  # noqa: ANN001, ANN202
        values = launch_values(context, ARGUMENTS)
        return [
            node_action(values, PLAYER_PARAMS, executable=PLAYER_EXECUTABLE, skip=("params_file",)),
            node_action(values, PERCEPTION_PARAMS, executable=PERCEPTION_EXECUTABLE),
            *rviz_node(values["rviz_config"], values),
        ]

    return LaunchDescription([*declare(ARGUMENTS), deferred(setup)])
