"""densefusion_node with its YAML parameters; topics follow realsense2_camera by default."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from densefusion_ros.ros.launch_support import FILE_PARAMETERS
from launch import LaunchDescription


def _node(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    return [Node(
        package="densefusion_ros",
        executable="densefusion_node",
        name="densefusion",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"device": LaunchConfiguration("device"), "use_sim_time": LaunchConfiguration("use_sim_time")},
                    {name: value(name) for name in FILE_PARAMETERS if value(name)}],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        remappings=[
            ("/camera/camera/color/image_raw", [LaunchConfiguration("camera_namespace"), "/color/image_raw"]),
            ("/camera/camera/color/camera_info", [LaunchConfiguration("camera_namespace"), "/color/camera_info"]),
            ("/camera/camera/aligned_depth_to_color/image_raw",
             [LaunchConfiguration("camera_namespace"), "/aligned_depth_to_color/image_raw"]),
        ],
    )]


def generate_launch_description():
    share = get_package_share_directory("densefusion_ros")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="",
                              description="the node's namespace (robot1: /robot1/densefusion/poses, TF frames robot1/<id>)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "densefusion.yaml"),
                              description="densefusion_node parameters (keyed /**: they apply in any namespace)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="stamps and input ages on /clock (bag replay)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("camera_namespace", default_value="/camera/camera",
                              description="namespace of the realsense2_camera topics"),
        DeclareLaunchArgument("estimator_weights", default_value="", description="estimator checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("refiner_weights", default_value="", description="refiner checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("segmenter_weights", default_value="", description="segmenter checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("catalog", default_value="", description="object catalog YAML ('': the parameter file's)"),
        OpaqueFunction(function=_node),
    ])
