"""The thin ROS 2 layer: message conversion, synchronisation, the node and launch helpers.

Only modules in this sub-package and the demo apps (:mod:`densefusion_ros.apps`) import rclpy or ROS messages.
"""
