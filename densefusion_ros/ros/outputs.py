"""Output messages for one processed frame: PoseArray, Detection3DArray, TF, markers.

Every message reuses the source image's header (stamp and optical frame id). Instance ids
(:func:`instance_id`) are ``<name>_<track_id>`` for an object the
:class:`~densefusion_ros.tracking.Tracker` follows, the same in every frame while it is followed,
and ``<name>_<k>`` from single-frame estimation, ``k`` being the instance number within its
class in that frame. Detections' ``id``, TF child frames (``<prefix><id>``) and marker labels
use it, so a consumer can follow an object by its id or TF frame. Each builder takes the
instances' ``Pose`` messages (:func:`poses`) beside the instances, so that the rotation of an
instance is converted to a quaternion once per frame, not once per message.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, PoseArray, PoseWithCovariance
from std_msgs.msg import ColorRGBA, Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from densefusion_ros.catalog import Catalog, ObjectInfo
from densefusion_ros.overlay import object_color
from densefusion_ros.pipeline import InstanceResult
from densefusion_ros.ros.conversions import pose_msg, transform_msg


def object_id(name: str, number: int) -> str:
    """``<name>_<number>``: the id of an object in detections, TF child frames and marker labels."""
    return f"{name}_{number}"


def instance_id(inst: InstanceResult) -> str:
    """``<name>_<track_id>`` when the instance has a track id (stable while followed), else
    ``<name>_<k>`` with ``k`` its instance number within its class."""
    return object_id(inst.name, inst.instance if inst.track_id is None else inst.track_id)


def poses(instances: Sequence[InstanceResult]) -> list[Pose]:
    """The ``Pose`` of each instance (unit quaternion; raises ValueError on a non-finite pose)."""
    return [pose_msg(i.R, i.t) for i in instances]


def pose_array(header: Header, posed: Sequence[Pose]) -> PoseArray:
    return PoseArray(header=header, poses=list(posed))


def detection(
    header: Header, det_id: str, name: str, score: float, R: np.ndarray, t: np.ndarray, pose: Pose, info: ObjectInfo | None,
    covariance: np.ndarray | None = None,
) -> Detection3D:
    """One vision_msgs 4.x detection of object ``name`` at ``pose`` (``R`` ``(3, 3)``, ``t`` ``(3,)`` m as a
    ``Pose``), with ``score``, and ``covariance`` ``(6, 6)`` when known; its bbox is the mesh's
    (centre ``R @ bbox_center + t``, the pose's orientation, the extents) or, without ``info``, the pose."""
    det = Detection3D(header=header, id=det_id)
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = name
    hyp.hypothesis.score = float(score)
    hyp.pose = PoseWithCovariance(pose=pose)
    if covariance is not None:  # row-major 6 x 6: x, y, z, turns about x, y, z
        hyp.pose.covariance = np.asarray(covariance, np.float64).reshape(36)
    det.results.append(hyp)
    if info is not None:
        x, y, z = (R @ info.bbox_center.astype(np.float64) + t).tolist()
        det.bbox.center = Pose(position=Point(x=x, y=y, z=z), orientation=pose.orientation)
        det.bbox.size.x, det.bbox.size.y, det.bbox.size.z = (float(v) for v in info.extents)
    else:
        det.bbox.center = hyp.pose.pose
    return det


def detections(header: Header, instances: Sequence[InstanceResult], posed: Sequence[Pose], catalog: Catalog) -> Detection3DArray:
    """vision_msgs 4.x detections (:func:`detection`): class_id = object name, score = confidence, id :func:`instance_id`."""
    return Detection3DArray(header=header, detections=[
        detection(header, instance_id(inst), inst.name, inst.confidence, inst.R, inst.t, pose, catalog.by_class_id(inst.class_id),
                  inst.covariance)
        for inst, pose in zip(instances, posed, strict=True)
    ])


def transforms(header: Header, instances: Sequence[InstanceResult], posed: Sequence[Pose], prefix: str) -> TFMessage:
    return TFMessage(
        transforms=[transform_msg(header, prefix + instance_id(i), p) for i, p in zip(instances, posed, strict=True)]
    )


def mesh_uri(path: Path) -> str:
    """``package://<package>/<path in its share folder>`` for a mesh installed in a ROS package's
    share folder (found on ``AMENT_PREFIX_PATH``), which an rviz on another machine with the same
    package resolves; otherwise a ``file://`` URI (this machine only). Looked up once per mesh and
    prefix list: the markers ask for it every frame."""
    return _mesh_uri(Path(path), os.environ.get("AMENT_PREFIX_PATH", ""))


@lru_cache(maxsize=256)
def _mesh_uri(path: Path, prefixes: str) -> str:
    path = path.resolve()
    for prefix in filter(None, prefixes.split(os.pathsep)):
        share = Path(prefix).resolve() / "share"
        if share not in path.parents:
            continue
        package, *rest = path.relative_to(share).parts
        if rest and (share / "ament_index" / "resource_index" / "packages" / package).is_file():
            return f"package://{package}/{'/'.join(rest)}"
    return path.as_uri()


def markers(
    header: Header, instances: Sequence[InstanceResult], posed: Sequence[Pose], catalog: Catalog, lifetime_s: float = 0.5
) -> MarkerArray:
    """Mesh and label markers; a DELETEALL first so objects that vanished leave no ghosts."""
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    for k, (inst, pose) in enumerate(zip(instances, posed, strict=True)):
        info = catalog.by_class_id(inst.class_id)
        r, g, b = (c / 255.0 for c in object_color(inst.class_id, info.color if info else None))
        alpha = float(np.clip(0.35 + 0.65 * inst.confidence, 0.0, 1.0))
        mesh = Marker(header=header, ns="objects", id=2 * k, action=Marker.ADD, pose=pose, lifetime=life)
        mesh.color = ColorRGBA(r=r, g=g, b=b, a=alpha)
        if info is not None:
            mesh.type = Marker.MESH_RESOURCE
            mesh.mesh_resource = mesh_uri(info.mesh_path)
            mesh.scale.x, mesh.scale.y, mesh.scale.z = (float(s) for s in info.scale)
        else:
            mesh.type = Marker.SPHERE
            mesh.scale.x = mesh.scale.y = mesh.scale.z = 0.05
        label = Marker(header=header, ns="labels", id=2 * k + 1, action=Marker.ADD, type=Marker.TEXT_VIEW_FACING, lifetime=life)
        label.pose = Pose(position=Point(x=pose.position.x, y=pose.position.y, z=pose.position.z))
        label.pose.position.y -= 0.6 * (info.diameter if info is not None else 0.1)
        label.pose.orientation.w = 1.0
        label.scale.z = 0.025
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        label.text = f"{instance_id(inst)} {inst.confidence:.2f}"
        out.markers.extend([mesh, label])
    return out
