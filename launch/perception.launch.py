"""SAM Fusion perception node: cameras + LiDAR + prompts in, masks and labeled cloud out.

Every node parameter is a launch argument of the same name and default (see docs/launch.md):

    ros2 launch sam_fusion perception.launch.py backend:=sam2 checkpoint:=facebook/sam2.1-hiera-tiny \\
        device:=cuda camera_names:='[front]' lidar_topic:=/velodyne_points namespace:=robot1

``launch`` is imported inside generate_launch_description() so the argument table below can be
read (and tested) where the launch package is not installed.
"""

from __future__ import annotations

from pathlib import Path

from samfusion.launch_args import launch_arguments
from samfusion.ros.perception_params import PERCEPTION_PARAMS

SHARE = Path(__file__).resolve().parent.parent  # share/sam_fusion (or the source tree)
EXECUTABLE = "perception_node"
PARAMS_FILE = SHARE / "config" / "perception.yaml"
ARGUMENTS = launch_arguments(PERCEPTION_PARAMS, params_file=str(PARAMS_FILE),
                             node="the perception node")


def generate_launch_description():  # noqa: ANN201 - launch's own entry point
    from launch import LaunchDescription

    from samfusion.ros.launch_actions import declare, deferred, launch_values, node_action

    def setup(context):  # noqa: ANN001, ANN202
        values = launch_values(context, ARGUMENTS)
        return [node_action(values, PERCEPTION_PARAMS, executable=EXECUTABLE)]

    return LaunchDescription([*declare(ARGUMENTS), deferred(setup)])
