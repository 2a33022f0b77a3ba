"""densefusion_node with its YAML parameters; topics follow realsense2_camera by default."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("densefusion_ros")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "densefusion.yaml"),
                              description="densefusion_node parameters"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera/camera",
                              description="namespace of the realsense2_camera topics"),
        Node(
            package="densefusion_ros",
            executable="densefusion_node",
            name="densefusion",
            output="screen",
            parameters=[LaunchConfiguration("params_file"), {"device": LaunchConfiguration("device")}],
            remappings=[
                ("/camera/camera/color/image_raw", [LaunchConfiguration("camera_namespace"), "/color/image_raw"]),
                ("/camera/camera/color/camera_info", [LaunchConfiguration("camera_namespace"), "/color/camera_info"]),
                ("/camera/camera/aligned_depth_to_color/image_raw",
                 [LaunchConfiguration("camera_namespace"), "/aligned_depth_to_color/image_raw"]),
            ],
        ),
    ])
