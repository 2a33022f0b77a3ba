"""The output messages of one frame agree with each other and with the poses (real ROS messages)."""

import numpy as np
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from densefusion_ros.catalog import Catalog
from densefusion_ros.pipeline import InstanceResult
from densefusion_ros.resources import share_path
from densefusion_ros.ros import outputs


def _instances(catalog: Catalog) -> list[InstanceResult]:
    rng = np.random.default_rng(0)
    out = []
    for k, info in enumerate(catalog):
        R = Rotation.random(random_state=k).as_matrix()
        t = np.array([0.1 * k, -0.05, 0.6 + 0.1 * k])
        q = Rotation.from_matrix(R).as_quat(scalar_first=True, canonical=True)
        out.append(InstanceResult(name=info.name, class_id=info.class_id, index=info.index, instance=0, R=R, t=t,
                                  quaternion_wxyz=q, confidence=float(rng.uniform(0.2, 0.9)), box=(0, 40, 0, 40), num_points=200))
    return out


def _xyzw(q) -> np.ndarray:
    return np.array([q.x, q.y, q.z, q.w])


def test_every_message_carries_the_same_pose_and_the_header():
    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    instances = _instances(catalog)
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    posed = outputs.poses(instances)
    poses = outputs.pose_array(header, posed)
    dets = outputs.detections(header, instances, posed, catalog)
    tf = outputs.transforms(header, instances, posed, "df/")
    markers = outputs.markers(header, instances, posed, catalog)
    assert poses.header == header and dets.header == header
    assert markers.markers[0].action == markers.markers[0].DELETEALL
    meshes = [m for m in markers.markers if m.ns == "objects"]
    labels = [m for m in markers.markers if m.ns == "labels"]
    assert len(meshes) == len(labels) == len(instances) == len(poses.poses) == len(dets.detections) == len(tf.transforms)
    for inst, p, det, tr, mesh, label in zip(instances, poses.poses, dets.detections, tf.transforms, meshes, labels):
        info = catalog.by_class_id(inst.class_id)
        expected = Rotation.from_matrix(inst.R).as_quat()
        assert abs(abs(_xyzw(p.orientation) @ expected) - 1) < 1e-9
        for pose in (det.results[0].pose.pose, mesh.pose):
            assert np.allclose(_xyzw(pose.orientation), _xyzw(p.orientation))
            assert np.allclose([pose.position.x, pose.position.y, pose.position.z], inst.t)
        assert np.allclose(_xyzw(tr.transform.rotation), _xyzw(p.orientation))
        assert np.allclose([tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z], inst.t)
        assert tr.header == header and tr.child_frame_id == f"df/{inst.name}_0"
        assert det.id == f"{inst.name}_0" and det.results[0].hypothesis.class_id == inst.name
        assert det.results[0].hypothesis.score == inst.confidence
        center = inst.R @ info.bbox_center + inst.t
        assert np.allclose([det.bbox.center.position.x, det.bbox.center.position.y, det.bbox.center.position.z], center)
        assert np.allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], info.extents)
        # the label floats above the object; the mesh stays at the pose
        assert np.isclose(label.pose.position.y, inst.t[1] - 0.6 * info.diameter)
        assert label.text.startswith(f"{inst.name}_0 ")


def test_instance_id_is_the_track_id_when_followed():
    """A followed object's id (detections, TF child frame, marker label) is ``<name>_<track_id>``; without a track id
    it is ``<name>_<instance number>``."""
    from dataclasses import replace

    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    single = _instances(catalog)[0]
    single = replace(single, instance=1)
    tracked = replace(single, track_id=7)
    assert outputs.instance_id(single) == f"{single.name}_1"
    assert outputs.instance_id(tracked) == f"{single.name}_7"
    assert outputs.instance_id(replace(single, track_id=0)) == f"{single.name}_0"
    header = Header(frame_id="cam")
    posed = outputs.poses([tracked])
    assert outputs.detections(header, [tracked], posed, catalog).detections[0].id == f"{single.name}_7"
    assert outputs.transforms(header, [tracked], posed, "df/").transforms[0].child_frame_id == f"df/{single.name}_7"
    label = [m for m in outputs.markers(header, [tracked], posed, catalog).markers if m.ns == "labels"][0]
    assert label.text.startswith(f"{single.name}_7 ")


def test_detections_carry_the_pose_covariance_when_known():
    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    known, unknown = _instances(catalog)[:2]
    known.covariance = np.diag([1e-6, 2e-6, 3e-6, 1e-3, 2e-3, 3e-3])
    dets = outputs.detections(Header(), [known, unknown], outputs.poses([known, unknown]), catalog)
    assert np.allclose(np.reshape(dets.detections[0].results[0].pose.covariance, (6, 6)), known.covariance)
    assert not np.any(dets.detections[1].results[0].pose.covariance)  # unknown: zeros, as ROS reads "not given"


def test_meshes_of_installed_packages_get_package_uris(tmp_path, monkeypatch):
    """A mesh in a package's share folder (registered in the ament index of a prefix on AMENT_PREFIX_PATH)
    becomes package://, which a remote rviz with that package resolves; any other mesh stays file://."""
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "my_objects").write_text("")
    mesh = prefix / "share" / "my_objects" / "meshes" / "mug.obj"
    mesh.parent.mkdir(parents=True)
    mesh.write_text("")
    loose = tmp_path / "elsewhere" / "mug.obj"
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"/nonexistent:{prefix}")
    assert outputs.mesh_uri(mesh) == "package://my_objects/meshes/mug.obj"
    assert outputs.mesh_uri(loose) == loose.resolve().as_uri()


def test_an_instance_moved_into_another_frame_turns_its_pose_and_covariance():
    """``InstanceResult.moved`` (the node's target_frame): a quarter turn about z swaps the x and y variances of
    both the shift and the turn blocks, and composes the pose."""
    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    inst = _instances(catalog)[0]
    inst.covariance = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) * 1e-6
    Rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    moved = inst.moved(Rz, np.array([1.0, 2.0, 3.0]))
    assert np.allclose(moved.R, Rz @ inst.R) and np.allclose(moved.t, Rz @ inst.t + [1.0, 2.0, 3.0])
    assert np.allclose(np.diag(moved.covariance), np.array([2.0, 1.0, 3.0, 5.0, 4.0, 6.0]) * 1e-6)
    assert np.allclose(Rotation.from_quat(moved.quaternion_wxyz, scalar_first=True).as_matrix(), moved.R)


def test_bag_ground_truth_is_built_as_the_node_detections():
    """The ground truth a bag carries (apps.bag) is what the node would publish for the same poses: ids ``<name>_<k>``
    numbered within each class, bbox centred on the mesh's bounding box, score = the visible share."""
    from dataclasses import replace

    from densefusion_ros.apps.bag import gt_detections
    from densefusion_ros.frame import Frame, GtObject

    catalog = Catalog.load(share_path("config", "objects", "demo.yaml"))
    first, second = _instances(catalog)[:2]
    instances = [first, replace(first, instance=1, t=first.t + 0.2, confidence=0.25), second]
    gt = [GtObject(class_id=i.class_id, R=i.R, t=i.t, visib_fract=i.confidence) for i in instances]
    gt.append(GtObject(class_id=99, R=np.eye(3), t=np.ones(3)))  # not in the catalog: left out
    header = Header(frame_id="camera_color_optical_frame")
    frame = Frame(rgb=np.zeros((4, 4, 3), np.uint8), depth_m=np.zeros((4, 4), np.float32), K=np.eye(3), gt=gt)
    ours = gt_detections(header, frame, catalog)
    assert ours == outputs.detections(header, instances, outputs.poses(instances), catalog)
    assert [d.id for d in ours.detections] == [f"{first.name}_0", f"{first.name}_1", f"{second.name}_0"]
    assert np.any(catalog.by_class_id(first.class_id).bbox_center), "the test needs a mesh whose bbox is off its origin"
