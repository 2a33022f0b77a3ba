"""Where the package's shared files (config/, models/, launch/, data/) are.

A source checkout (editable install) uses the repository itself; a colcon or pip install uses
``<prefix>/share/densefusion_ros``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "densefusion_ros"


def share_dir() -> Path:
    """The folder that holds ``config/``, ``models/``, ``launch/`` and ``data/``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # ament_index missing or package not registered
        return Path(sys.prefix) / "share" / PACKAGE


def share_path(*parts: str) -> Path:
    """A path inside :func:`share_dir`, e.g. ``share_path("models", "estimator.pth")``."""
    return share_dir().joinpath(*parts)
