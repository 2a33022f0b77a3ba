"""densefusion_ros: DenseFusion 6D object pose estimation for ROS 2.

The package is split into a ROS-free core (geometry, networks, checkpoints, pipeline, data,
training, evaluation) and a thin ROS layer in :mod:`densefusion_ros.ros`. Nothing outside
``densefusion_ros.ros`` imports rclpy or ROS messages.
"""

__version__ = "0.1.0"
