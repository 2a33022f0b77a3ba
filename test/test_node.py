"""densefusion_node in its own process, fed by a publisher process, observed by a recorder process."""

import json
import time

import numpy as np
import pytest
import torch
import trimesh

from conftest import spawn
from densefusion_ros.models import build_estimator, build_refiner, save_checkpoint
from densefusion_ros.models.transforms import IMAGENET_NORMALIZATION


@pytest.fixture
def node_files(tmp_path):
    """A one-object catalog (a 10x6x4 cm box) and random-weight compact networks."""
    trimesh.creation.box(extents=(0.10, 0.06, 0.04)).export(tmp_path / "box.obj")
    (tmp_path / "catalog.yaml").write_text("objects:\n  - {name: box, class_id: 1, index: 0, mesh: box.obj}\n")
    torch.manual_seed(0)
    est = build_estimator(num_objects=1, backbone="compact")
    save_checkpoint(tmp_path / "est.pth", est, kind="estimator", num_points=100, object_names=["box"], normalization=IMAGENET_NORMALIZATION)
    save_checkpoint(tmp_path / "ref.pth", build_refiner(num_objects=1), kind="refiner", num_points=100, object_names=["box"], normalization=IMAGENET_NORMALIZATION)
    return tmp_path


def start_node(files, env, *extra):
    node = spawn(
        ["-m", "densefusion_ros.ros.node", "--ros-args",
         "-p", f"estimator_weights:={files / 'est.pth'}", "-p", f"refiner_weights:={files / 'ref.pth'}",
         "-p", f"catalog:={files / 'catalog.yaml'}", "-p", "label_topic:=/test/label", "-p", "device:=cpu",
         "-p", "seed:=0", *extra], env)
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = node.stdout.readline()
        lines.append(line)
        if "ready:" in line:
            return node
        if node.poll() is not None:
            break
    node.kill()
    raise AssertionError("node did not start:\n" + "".join(lines) + (node.stdout.read() or ""))


def stop(proc):
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0]
    except Exception:
        proc.kill()
        return proc.communicate()[0]


def run_phase(env, scenario, frames, overlay):
    recorder = spawn(["test/nodes/output_recorder.py", str(4 + frames * 0.5 + 4), *(["--overlay"] if overlay else [])], env)
    publisher = spawn(["test/nodes/frame_publisher.py", scenario, str(frames)], env)
    pub_out, _ = publisher.communicate(timeout=60)
    rec_out, _ = recorder.communicate(timeout=60)
    stamps = [tuple(json.loads(line)["stamp"]) for line in pub_out.splitlines() if line.startswith("{")]
    return stamps, json.loads(rec_out.strip().splitlines()[-1])


def test_node_publishes_stamped_poses_detections_tf(node_files, ros_env):
    node = start_node(node_files, ros_env)
    try:
        stamps, got = run_phase(ros_env, "object", 6, overlay=False)
        assert len(stamps) == 6
        assert 2 <= len(got["poses"]) <= 6
        # one PoseArray and one Detection3DArray per processed frame, each with its source stamp
        assert [tuple(p["stamp"]) for p in got["poses"]] == [tuple(d["stamp"]) for d in got["detections"]]
        for msg in got["poses"]:
            assert tuple(msg["stamp"]) in stamps
            assert msg["frame"] == "camera_color_optical_frame"
            assert msg["n"] == 1
            q = np.array(msg["q"][0])
            assert abs(np.dot(q, q) - 1) < 1e-3 and np.all(np.isfinite(msg["t"][0]))
        for msg in got["detections"]:
            (det,) = msg["dets"]
            assert det["class_id"] == "box" and det["id"] == "box_0"
            assert 0.0 < det["score"] < 1.0
            assert np.allclose(sorted(det["size"]), [0.04, 0.06, 0.10], atol=1e-4)
        assert {(t["parent"], t["child"]) for t in got["tf"]} == {("camera_color_optical_frame", "box_0")}
        assert {tuple(t["stamp"]) for t in got["tf"]} <= set(stamps)
        assert got["markers"] >= 1
        assert got["overlay"] == [] and got["diagnostics"].get("overlays published") == "0"

        stamps, got = run_phase(ros_env, "empty", 3, overlay=True)
        assert len(got["poses"]) >= 1
        assert all(p["n"] == 0 for p in got["poses"]), "nothing there: empty PoseArray"
        assert all(d["dets"] == [] for d in got["detections"])
        assert all(tuple(p["stamp"]) in stamps for p in got["poses"])
        assert got["overlay"], "overlay is published while subscribed"
        assert got["overlay"][0]["encoding"] == "rgb8" and got["overlay"][0]["w"] == 160
    finally:
        out = stop(node)
    assert "Traceback" not in out, out


def test_yaml_sets_every_declared_parameter():
    import yaml

    from densefusion_ros.resources import share_path
    from densefusion_ros.ros.node import PARAMETERS

    params = yaml.safe_load(share_path("config", "densefusion.yaml").read_text())["densefusion"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name][0]), name
