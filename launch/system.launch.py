"""The whole suite on a robot: perception node + fusion node (+ rviz2 with rviz:=true).

Arguments: every perception and fusion parameter under its own name (shared names such as
``prompt_topic`` have the same default and feed both nodes), the common ones (namespace,
use_sim_time, log_level, remappings), ``perception_params_file`` / ``fusion_params_file`` and
``rviz`` / ``rviz_config``. Unless ``scene_topics`` is given, the fusion node reads the results of
every ``camera_names`` camera. See docs/launch.md.

    ros2 launch sam_fusion system.launch.py backend:=sam3 checkpoint:=$HOME/models/sam3 \\
        device:=cuda rviz:=true
"""

from __future__ import annotations

from pathlib import Path

from samfusion.launch_args import (
    LaunchArgument,
    common_arguments,
    default_string,
    merge_arguments,
    parameter_arguments,
    rviz_arguments,
    scene_topics_following_cameras,
)
from samfusion.ros.fusion_node import FUSION_PARAMS
from samfusion.ros.perception_params import PERCEPTION_PARAMS

SHARE = Path(__file__).resolve().parent.parent  # share/sam_fusion (or the source tree)
PERCEPTION_EXECUTABLE = "perception_node"
FUSION_EXECUTABLE = "fusion_node"
PERCEPTION_PARAMS_FILE = SHARE / "config" / "perception.yaml"
RVIZ_CONFIG = SHARE / "config" / "rviz" / "sam_fusion.rviz"
# Unless scene_topics is given, the fusion node reads every camera_names camera's results.
SCENE_TOPICS_DEFAULT = default_string(next(s for s in FUSION_PARAMS if s.name == "scene_topics"))

# params_file is split in two: each node gets its own file.
_COMMON = [a for a in common_arguments() if a.name != "params_file"]
ARGUMENTS = merge_arguments(
    parameter_arguments(PERCEPTION_PARAMS),
    parameter_arguments(FUSION_PARAMS),
    _COMMON,
    [
        LaunchArgument("perception_params_file", str(PERCEPTION_PARAMS_FILE),
                       "ROS parameters YAML for the perception node (empty: none)"),
        LaunchArgument("fusion_params_file", "", "ROS parameters YAML for the fusion node "
                       "(empty: none)"),
    ],
    rviz_arguments(str(RVIZ_CONFIG), enabled=False),
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
        perception = launch_values(context, ARGUMENTS, rename={"params_file": "perception_params_file"})
        fusion = scene_topics_following_cameras(
            launch_values(context, ARGUMENTS, rename={"params_file": "fusion_params_file"}), SCENE_TOPICS_DEFAULT)
        return [
            node_action(perception, PERCEPTION_PARAMS, executable=PERCEPTION_EXECUTABLE),
            node_action(fusion, FUSION_PARAMS, executable=FUSION_EXECUTABLE),
            *rviz_node(perception["rviz_config"], perception),
        ]

    return LaunchDescription([*declare(ARGUMENTS), deferred(setup)])
