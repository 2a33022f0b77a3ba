"""Shared fixtures. Every ROS process in the tests gets its environment from ``ros_env``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densefusion_ros.ros.env import local_ros_env

REPO = Path(__file__).resolve().parent.parent
_domains = itertools.count()


@pytest.fixture
def ros_env(tmp_path_factory) -> dict[str, str]:
    """Loopback-only ROS 2 environment with a domain id of its own and a temporary log dir."""
    domain = 1 + (os.getpid() * 13 + next(_domains) * 37) % 200
    return local_ros_env(domain_id=domain, log_dir=tmp_path_factory.mktemp("ros_log"))


def spawn(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    """Start ``python args...`` as a separate process with ``env``; output is captured as text."""
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
