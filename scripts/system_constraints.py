"""Print pip constraints that hold this Python's numpy and OpenCV at their installed versions.

``python3 scripts/system_constraints.py > /tmp/system-constraints.txt`` on an apt ROS 2, then
``pip install -r requirements-apt-ros.txt -c /tmp/system-constraints.txt``: pip then picks versions
of the other packages that work with the system's numpy (which apt's cv_bridge is built against),
or stops with a clear conflict, instead of upgrading numpy under cv_bridge.
"""

from __future__ import annotations

import importlib.metadata
import sys

HELD = ("numpy", "opencv-python", "opencv-python-headless", "opencv-contrib-python")


def constraints() -> list[str]:
    """``name==version`` for each held package that is installed (as pip sees it; apt's numpy shows too)."""
    out = []
    for name in HELD:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


if __name__ == "__main__":
    sys.stdout.write("".join(line + "\n" for line in constraints()))
