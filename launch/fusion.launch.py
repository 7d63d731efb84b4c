"""SAM Fusion fusion node: the FusionQuery service over an LLM ensemble (OpenRouter).

Every node parameter is a launch argument of the same name and default (see docs/launch.md):

    OPENROUTER_API_KEY=... ros2 launch sam_fusion fusion.launch.py \\
        pools_file:=/path/to/fusion_pools.yaml default_pool:=balanced

The API key never goes through a launch argument: the node reads the environment variable
named by ``api_key_env`` or the file at ``api_key_file``.
"""

from __future__ import annotations

from pathlib import Path

from samfusion.launch_args import launch_arguments
from samfusion.ros.fusion_node import FUSION_PARAMS

SHARE = Path(__file__).resolve().parent.parent  # share/sam_fusion (or the source tree)
EXECUTABLE = "fusion_node"
ARGUMENTS = launch_arguments(FUSION_PARAMS, params_file="", node="the fusion node")


def generate_launch_description():  # noqa: ANN201 - launch's own entry point
    from launch import LaunchDescription

    from samfusion.ros.launch_actions import declare, deferred, launch_values, node_action

    def setup(context):  # noqa: ANN001, ANN202
        values = launch_values(context, ARGUMENTS)
        return [node_action(values, FUSION_PARAMS, executable=EXECUTABLE)]

    return LaunchDescription([*declare(ARGUMENTS), deferred(setup)])
