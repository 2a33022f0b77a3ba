"""Datasets: BOP (read and write), YCB-Video and Linemod_preprocessed readers, the pybullet generator.

Every reader returns :class:`densefusion_ros.frame.Frame` objects with poses in **metres** and the
OpenCV camera frame; file units (mm, 1e-4 m depth units) are converted at this boundary only.
"""
