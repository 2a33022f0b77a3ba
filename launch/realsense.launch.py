"""A RealSense camera with depth aligned to colour, densefusion_node, and optionally rviz2.

Includes realsense2_camera's ``rs_launch.py`` with ``align_depth.enable:=true`` (off by
default in the driver, and without it the aligned depth topic never appears).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from densefusion_ros.ros.launch_support import rviz_config
from launch import LaunchDescription


def _rviz(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory("densefusion_ros")
    return [Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", str(rviz_config(os.path.join(share, "config", "densefusion.rviz"), value("namespace"),
                                         value("camera_namespace"), value("camera_name")))],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )]


def generate_launch_description():
    share = get_package_share_directory("densefusion_ros")
    realsense = get_package_share_directory("realsense2_camera")
    return LaunchDescription([
        DeclareLaunchArgument("rviz", default_value="true",
                              description="start rviz2 with config/densefusion.rviz, its topics moved to the namespaces"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu or cuda:N"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "densefusion.yaml")),
        DeclareLaunchArgument("namespace", default_value="", description="densefusion_node's namespace (and TF prefix)"),
        DeclareLaunchArgument("log_level", default_value="info", description="densefusion_node's log level"),
        DeclareLaunchArgument("camera_name", default_value="camera", description="realsense2_camera's camera_name"),
        DeclareLaunchArgument("camera_namespace", default_value="camera", description="realsense2_camera's camera_namespace"),
        DeclareLaunchArgument("serial_no", default_value="''", description="realsense2_camera's serial_no ('' = the first camera)"),
        DeclareLaunchArgument("estimator_weights", default_value="", description="estimator checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("refiner_weights", default_value="", description="refiner checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("segmenter_weights", default_value="", description="segmenter checkpoint ('': the parameter file's)"),
        DeclareLaunchArgument("catalog", default_value="", description="object catalog YAML ('': the parameter file's)"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(realsense, "launch", "rs_launch.py")),
            launch_arguments={
                "camera_name": LaunchConfiguration("camera_name"),
                "camera_namespace": LaunchConfiguration("camera_namespace"),
                "serial_no": LaunchConfiguration("serial_no"),
                "align_depth.enable": "true",
                "enable_sync": "true",
                "rgb_camera.color_profile": "640,480,30",
                "depth_module.depth_profile": "640,480,30",
            }.items(),
        ),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "launch", "densefusion.launch.py")),
            launch_arguments={
                "params_file": LaunchConfiguration("params_file"), "device": LaunchConfiguration("device"),
                "namespace": LaunchConfiguration("namespace"), "log_level": LaunchConfiguration("log_level"),
                "camera_namespace": ["/", LaunchConfiguration("camera_namespace"), "/", LaunchConfiguration("camera_name")],
                "estimator_weights": LaunchConfiguration("estimator_weights"),
                "refiner_weights": LaunchConfiguration("refiner_weights"),
                "segmenter_weights": LaunchConfiguration("segmenter_weights"),
                "catalog": LaunchConfiguration("catalog"),
            }.items(),
        ),
        OpaqueFunction(function=_rviz),
    ])
