"""What the launch files compute at launch time, in their ``OpaqueFunction``: plain Python, so that
it is tested without ``ros2 launch``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from densefusion_ros.ros.parameters import PARAMETERS
from densefusion_ros.ros.topics import CAMERA_NAMESPACE, COLOR_OPTICAL_FRAME

__all__ = ["FILE_PARAMETERS", "rviz_config"]

# The node's parameters that are also launch arguments: given, they override the parameter file;
# left empty, the file's values hold (a plain override would replace them with '').
FILE_PARAMETERS = tuple(spec.name for spec in PARAMETERS if spec.launch_argument)

_NODE_TOPICS = "/densefusion/"  # the node's topics in config/densefusion.rviz (node name densefusion, no namespace)
_CAMERA_TOPICS = f"{CAMERA_NAMESPACE}/"
_CAMERA_FRAME = COLOR_OPTICAL_FRAME


def rviz_config(template: str | Path, namespace: str = "", camera_namespace: str = "camera", camera_name: str = "camera") -> Path:
    """``template`` (config/densefusion.rviz) with its topics and fixed frame moved to a node in
    ``namespace`` and a camera ``/<camera_namespace>/<camera_name>``, written to a new temporary file.

    rviz's topics are absolute, so the file has to be rewritten for each namespace, as Nav2's launch
    files do for theirs. Returns the new file's path.
    """
    text = Path(template).read_text()
    namespace = namespace.strip("/")
    if namespace:
        text = text.replace(_NODE_TOPICS, f"/{namespace}{_NODE_TOPICS}")
    camera = "/".join(p for p in (camera_namespace.strip("/"), camera_name.strip("/")) if p)
    text = text.replace(_CAMERA_TOPICS, f"/{camera}/" if camera else "/")
    text = text.replace(_CAMERA_FRAME, f"{camera_name.strip('/')}_color_optical_frame")
    out = Path(tempfile.mkdtemp(prefix="densefusion_rviz_")) / "densefusion.rviz"
    out.write_text(text)
    return out
