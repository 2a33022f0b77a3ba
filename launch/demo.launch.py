"""The README demo under ros2 launch: replay the bundled sequence, run the node, print poses."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from densefusion_ros.apps.demo import node_threads
from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("densefusion_ros")
    return LaunchDescription([
        DeclareLaunchArgument("loops", default_value="5", description="times the bundled sequence is replayed"),
        DeclareLaunchArgument("out", default_value="out/demo", description="overlay images and summary.json"),
        SetEnvironmentVariable("OMP_NUM_THREADS", str(node_threads())),  # torch threads for the node, as make demo runs it
        IncludeLaunchDescription(PythonLaunchDescriptionSource(os.path.join(share, "launch", "densefusion.launch.py"))),
        Node(package="densefusion_ros", executable="densefusion_listener", name="densefusion_listener", output="screen",
             arguments=["--overlay-dir", [LaunchConfiguration("out"), "/overlays"], "--summary",
                        [LaunchConfiguration("out"), "/summary.json"]]),
        Node(package="densefusion_ros", executable="densefusion_replay", name="densefusion_replay", output="screen",
             arguments=["--loops", LaunchConfiguration("loops"), "--pingpong"]),
    ])
