"""The demo applications around the node: rosbag2 I/O, the replay publisher, the listener and the demo.

They import rclpy and ROS messages (as :mod:`densefusion_ros.ros` does); the node does not import them.
"""
