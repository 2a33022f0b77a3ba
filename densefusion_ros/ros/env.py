"""The environment every ROS process of this project runs with: loopback only, its own domain.

Discovery stays on localhost (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), each run gets its
own ``ROS_DOMAIN_ID`` and a temporary ``ROS_LOG_DIR``, and Fast DDS loads a profile that uses
shared memory plus UDP on 127.0.0.1 only. Tests, the demo launcher and benchmarks all use this.
This module does not import rclpy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from densefusion_ros.resources import share_path

_DOMAIN_SPAN = 200  # ROS_DOMAIN_ID 1..200 stays clear of the port-range limits (max 232)


def pick_domain_id(seed: int | None = None) -> int:
    """A domain id in 1..200 derived from ``seed`` (default: this process id)."""
    return 1 + ((os.getpid() if seed is None else seed) * 7919) % _DOMAIN_SPAN


def local_ros_env(
    domain_id: int | None = None,
    log_dir: str | Path | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up for loopback-only ROS 2 traffic."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range
    env["ROS_DOMAIN_ID"] = str(pick_domain_id() if domain_id is None else domain_id)
    env["ROS_LOG_DIR"] = str(log_dir or tempfile.mkdtemp(prefix="densefusion_ros_log_"))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    profile = share_path("config", "fastdds_localhost.xml")
    if profile.is_file() and env["RMW_IMPLEMENTATION"] == "rmw_fastrtps_cpp":
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def apply_local_ros_env(domain_id: int | None = None, log_dir: str | Path | None = None) -> dict[str, str]:
    """Set :func:`local_ros_env` in this process (before ``rclpy.init``); returns the new values."""
    env = local_ros_env(domain_id, log_dir)
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    os.environ.update(changed)
    return changed
