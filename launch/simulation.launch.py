"""Gazebo (gz sim, Harmonic) world + ros_gz_bridge + perception + fusion + rviz2, on sim time.

The world (config/sim/sam_fusion_world.sdf) holds a robot with a camera and a 3D LiDAR and a few
objects to prompt for; the bridge (config/sim/ros_gz_bridge.yaml) brings image, camera_info,
point cloud and /clock over to ROS under the perception node's default topic names; the
perception parameters (config/sim/perception_sim.yaml) carry the camera <- LiDAR extrinsic of
the world's sensor poses. Every system.launch.py argument is accepted as well. See
docs/simulation.md.

    ros2 launch sam_fusion simulation.launch.py            # GUI + rviz2
    ros2 launch sam_fusion simulation.launch.py headless:=true rviz:=false
"""

from __future__ import annotations

from pathlib import Path

from samfusion.launch_args import merge_arguments, rviz_arguments, simulation_arguments

SHARE = Path(__file__).resolve().parent.parent  # share/sam_fusion (or the source tree)
WORLD = SHARE / "config" / "sim" / "sam_fusion_world.sdf"
BRIDGE_CONFIG = SHARE / "config" / "sim" / "ros_gz_bridge.yaml"
SIM_PARAMS_FILE = SHARE / "config" / "sim" / "perception_sim.yaml"
SYSTEM_LAUNCH = SHARE / "launch" / "system.launch.py"
RVIZ_CONFIG = SHARE / "config" / "rviz" / "sam_fusion.rviz"
BRIDGE_PACKAGE, BRIDGE_EXECUTABLE = "ros_gz_bridge", "parameter_bridge"
GZ_SIM_PACKAGE, GZ_SIM_LAUNCH = "ros_gz_sim", "gz_sim.launch.py"

ARGUMENTS = merge_arguments(
    simulation_arguments(str(WORLD), str(BRIDGE_CONFIG)),
    rviz_arguments(str(RVIZ_CONFIG), enabled=True),
)
# Handed to system.launch.py (which declares every node argument as well).
SYSTEM_OVERRIDES = {"use_sim_time": "true", "perception_params_file": str(SIM_PARAMS_FILE)}


def generate_launch_description():  # noqa: ANN201 - launch's own entry point
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    from samfusion.launch_args import parse_bool
    from samfusion.ros.launch_actions import declare, deferred, launch_values

    def gazebo(context):  # noqa: ANN001, ANN202
        values = launch_values(context, ARGUMENTS)
        server_only = ["-s", "--headless-rendering"] if parse_bool(values["headless"], "headless") else []
        gz_args = " ".join(["-r", "-v", "3", *server_only, values["world"]])
        include = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare(GZ_SIM_PACKAGE), "launch", GZ_SIM_LAUNCH])),
            launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items())
        bridge = Node(package=BRIDGE_PACKAGE, executable=BRIDGE_EXECUTABLE,
                      namespace=LaunchConfiguration("namespace", default="").perform(context) or None,
                      parameters=[{"config_file": values["bridge_config"], "use_sim_time": True}],
                      output="screen")
        return [include, bridge]

    system = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(SYSTEM_LAUNCH)),
                                      launch_arguments={**SYSTEM_OVERRIDES,
                                                        "rviz": LaunchConfiguration("rviz"),
                                                        "rviz_config": LaunchConfiguration("rviz_config")
                                                        }.items())
    return LaunchDescription([*declare(ARGUMENTS), deferred(gazebo), system])
