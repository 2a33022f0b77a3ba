"""Topic names shared by the node's defaults, the demo apps, the bags and the test harnesses.

The camera topics are realsense2_camera's (camera namespace and name both ``camera``, depth
aligned to colour), so that a RealSense driver, ``ros2 bag record`` captures of it and the
bundled sequence all feed the node without remapping. This module imports nothing.
"""

CAMERA_NAMESPACE = "/camera/camera"  # realsense2_camera's default camera_namespace/camera_name
COLOR_TOPIC = f"{CAMERA_NAMESPACE}/color/image_raw"
DEPTH_TOPIC = f"{CAMERA_NAMESPACE}/aligned_depth_to_color/image_raw"
CAMERA_INFO_TOPIC = f"{CAMERA_NAMESPACE}/color/camera_info"
GT_TOPIC = "/ground_truth/detections"  # vision_msgs/Detection3DArray of the bags' ground truth (class_id = object name)
COLOR_OPTICAL_FRAME = "camera_color_optical_frame"  # realsense2_camera's optical frame of the colour image (frame_id of the above)
