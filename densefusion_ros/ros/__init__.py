"""The thin ROS 2 layer: message conversion, synchronisation, the node, replay and launch helpers.

Only modules in this sub-package import rclpy or ROS messages.
"""
