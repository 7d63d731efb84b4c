"""Launch glue shared by the files in ``launch/``: declare arguments, build nodes from them.

Imports ``launch`` and ``launch_ros``; the argument tables and the parsing of their values live
in the pure :mod:`samfusion.launch_args` so they are tested without a ROS install.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_context import LaunchContext
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from samfusion.launch_args import LaunchArgument, node_settings, parse_bool

__all__ = ["PACKAGE", "declare", "launch_values", "node_action", "deferred", "rviz_node"]

PACKAGE = "sam_fusion"


def declare(arguments: Iterable[LaunchArgument]) -> list[DeclareLaunchArgument]:
    """One DeclareLaunchArgument per argument, default and description included."""
    return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
            for a in arguments]


def launch_values(context: LaunchContext, arguments: Iterable[LaunchArgument],
                  rename: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values given for ``arguments``; ``rename`` maps a node-side name to the argument
    that feeds it (e.g. ``params_file`` <- ``perception_params_file``)."""
    values = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
    for node_side, argument in (rename or {}).items():
        values[node_side] = LaunchConfiguration(argument).perform(context)
    return values


def node_action(values: Mapping[str, str], specs: Sequence[Any], executable: str,
                package: str = PACKAGE, skip: Iterable[str] = ()) -> Node:
    """A Node whose parameters, namespace, log level and remappings come from ``values``."""
    values = {k: v for k, v in values.items() if k not in set(skip)}
    settings = node_settings(specs, values)
    return Node(package=package, executable=executable, namespace=settings.namespace or None,
                parameters=settings.parameters, ros_arguments=settings.ros_arguments,
                remappings=settings.remappings, output="screen", emulate_tty=True)


def deferred(function: Any) -> OpaqueFunction:
    """Run ``function(context) -> list of actions`` once the launch arguments are known."""
    return OpaqueFunction(function=function)


def rviz_node(config: str, values: Mapping[str, str]) -> list[Node]:
    """rviz2 with ``config`` in the nodes' namespace (its topics are relative), or nothing when
    the ``rviz`` argument is false."""
    if not parse_bool(values.get("rviz", "false"), "rviz"):
        return []
    return [Node(package="rviz2", executable="rviz2", arguments=["-d", config],
                 namespace=values.get("namespace", "").strip() or None,
                 parameters=[{"use_sim_time": parse_bool(values.get("use_sim_time", "false"))}],
                 output="screen")]
