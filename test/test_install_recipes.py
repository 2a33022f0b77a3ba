"""The two install recipes agree: the apt-ROS requirements carry every package of the pinned set except the
ones the system provides there (numpy, OpenCV) and torch (its own index), with ranges instead of pins; and the
constraints printer holds the installed numpy."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from conftest import REPO

SYSTEM_PROVIDED = {"numpy", "opencv-python-headless", "torch"}
TEST_ONLY = {"pytest", "hypothesis", "ruff"}


def _requirements(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    reqs = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    return {re.split(r"[<>=!~; ]", r)[0].lower().replace("_", "-"): r for r in reqs}


def test_apt_ros_requirements_cover_the_pinned_set_without_the_systems_packages():
    pinned, apt = _requirements("requirements.txt"), _requirements("requirements-apt-ros.txt")
    expected = {"open3d" if n == "open3d-cpu" else n for n in pinned} - SYSTEM_PROVIDED - TEST_ONLY  # open3d: any build
    assert set(apt) == expected
    assert not any("==" in spec for spec in apt.values()), "ranges, not pins, beside an apt ROS"
    assert not SYSTEM_PROVIDED & set(apt)


def test_constraints_hold_the_installed_numpy():
    out = subprocess.run([sys.executable, "scripts/system_constraints.py"], cwd=REPO, capture_output=True, text=True, check=True)
    assert f"numpy=={np.__version__}" in out.stdout.splitlines()
