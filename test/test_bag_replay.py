"""rosbag2 sequences written with rosbags, read back, and replayed to another process over DDS."""

import json
import signal
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from densefusion_ros.apps.bag import load_frames, read_sequence, write_sequence
from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import Frame, GtObject
from densefusion_ros.ros.topics import CAMERA_INFO_TOPIC, COLOR_TOPIC, DEPTH_TOPIC, GT_TOPIC

from conftest import spawn

K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])


def frames(n=3):
    rng = np.random.default_rng(1)
    for k in range(n):
        rgb = np.full((48, 64, 3), 40 * (k + 1), np.uint8)
        depth = rng.uniform(0.4, 0.9, (48, 64)).astype(np.float32)
        depth[0, :5] = 0.0
        yield Frame(rgb=rgb, depth_m=depth, K=K, gt=[GtObject(class_id=1, R=np.eye(3), t=np.array([0.0, 0.0, 0.5 + k]))])


@pytest.fixture
def catalog(tmp_path):
    trimesh.creation.box(extents=(0.1, 0.1, 0.1)).export(tmp_path / "cube.obj")
    (tmp_path / "cat.yaml").write_text("objects:\n  - {name: cube, class_id: 1, mesh: cube.obj}\n")
    return Catalog.load(tmp_path / "cat.yaml")


@pytest.mark.parametrize("compressed", [True, False])
def test_write_and_read_sequence(tmp_path, catalog, compressed):
    assert write_sequence(tmp_path / "bag", frames(), catalog, compressed=compressed) == 3
    msgs = list(read_sequence(tmp_path / "bag"))
    suffix = "/compressed" if compressed else ""
    topics = {m[0] for m in msgs}
    assert topics == {COLOR_TOPIC + suffix, DEPTH_TOPIC + suffix, CAMERA_INFO_TOPIC, GT_TOPIC}
    assert len(msgs) == 12
    times = sorted({m[2] for m in msgs})
    assert np.allclose(np.diff(times), 1e9 / 30, atol=1)
    assert [m[0] for m in read_sequence(tmp_path / "bag", [GT_TOPIC])] == [GT_TOPIC] * 3
    assert list(read_sequence(tmp_path / "bag", ["/other_camera/color/image_raw"])) == []  # not "every topic"
    assert len(load_frames(tmp_path / "bag")) == 3


def test_write_sequence_with_the_frames_own_stamps(tmp_path, catalog):
    """rate_hz=None: bag times are the frames' stamps (a synth --sequence video's), which must increase."""
    stamped = [replace(f, stamp=2.0 + k / 30) for k, f in enumerate(frames())]
    assert write_sequence(tmp_path / "bag", stamped, catalog, rate_hz=None) == 3
    assert sorted({m[2] for m in read_sequence(tmp_path / "bag")}) == [round((2.0 + k / 30) * 1e9) for k in range(3)]
    with pytest.raises(ValueError, match="does not follow"):
        write_sequence(tmp_path / "bag2", [replace(f, stamp=0.0) for f in frames()], catalog, rate_hz=None)


def test_replay_streams_decoded_images(tmp_path, catalog, ros_env):
    write_sequence(tmp_path / "bag", frames(), catalog)
    recorder = spawn(["test/nodes/image_recorder.py", "15"], ros_env)
    assert recorder.stdout.readline().strip() == "ready"
    replay = spawn(["-m", "densefusion_ros.apps.replay", "--bag", str(tmp_path / "bag"), "--rate", "5", "--loops", "3",
                    "--stamps-out", str(tmp_path / "stamps.txt")], ros_env)
    rep_out, _ = replay.communicate(timeout=60)
    assert replay.returncode == 0, rep_out
    got = json.loads(recorder.communicate(timeout=60)[0].strip().splitlines()[-1])
    assert min(len(got[k]) for k in ("color", "depth", "info", "gt")) >= 4, {k: len(v) for k, v in got.items()}
    assert got["color"][0]["enc"] == "rgb8" and got["depth"][0]["enc"] == "16UC1"
    # colour (JPEG) close, depth (PNG) exact in millimetres
    means = sorted({round(c["mean"]) for c in got["color"]})
    assert all(any(abs(m - 40 * (k + 1)) <= 2 for k in range(3)) for m in means)
    expected = {int(np.round(f.depth_m * 1000).sum()) for f in frames()}
    assert {d["sum_mm"] for d in got["depth"]} <= expected
    # every replayed set shares one fresh stamp, so the synchroniser and GT matching work
    color_stamps = {tuple(c["stamp"]) for c in got["color"]}
    assert {tuple(d["stamp"]) for d in got["depth"]} & color_stamps
    assert {tuple(g["stamp"]) for g in got["gt"]} & color_stamps
    assert got["gt"][0]["names"] == ["cube"]
    assert got["info"][0]["k"][0] == 60.0
    # --stamps-out: one line per published set, "sec.nanosec index", the index cycling over the bag's frames
    logged = [line.split() for line in (tmp_path / "stamps.txt").read_text().splitlines()]
    assert [int(k) for _, k in logged] == list(range(len(list(frames())))) * 3
    by_stamp = {tuple(int(x) for x in st.split(".")): int(k) for st, k in logged}
    assert {tuple(c["stamp"]) for c in got["color"]} <= set(by_stamp)


@pytest.mark.parametrize("how", ["keep-stamps", "clock"])
def test_the_node_takes_a_recording_with_its_own_stamps_and_loops(ros_env, how):
    """The bundled sequence replayed twice with its recorded stamps (from long ago), as ``ros2 bag play``
    does: without ``/clock`` the node recognises the steady lag and processes the frames; with ``--clock`` and
    ``use_sim_time`` it measures ages on ``/clock``. Either way the second loop's jump back starts the
    sequence checks again instead of dropping every frame as out of order."""
    from test_node import stop, wait_ready

    from densefusion_ros.resources import share_path

    recorded = {(t // 10**9, t % 10**9) for _, _, t, _ in read_sequence(share_path("data", "demo_sequence"))}
    sim_time = ["-p", "use_sim_time:=true"] if how == "clock" else []
    node = wait_ready(spawn(["-m", "densefusion_ros.ros.node", "--ros-args", "-p", "device:=cpu", "-p", "mode:=detect",
                             "-p", "icp:=none", "-p", "torch_threads:=1", *sim_time], ros_env))
    recorder = spawn(["test/nodes/pose_recorder.py", "120"], ros_env)
    waiter = spawn(["test/nodes/pose_waiter.py", "1", "60"], ros_env)  # until the outputs of the second loop begin
    try:
        assert recorder.stdout.readline().strip() == "ready" and waiter.stdout.readline().strip() == "ready"
        replay = spawn(["-m", "densefusion_ros.apps.replay", "--rate", "15", "--loops", "2", f"--{how}"], ros_env)
        assert replay.communicate(timeout=120)[1] is None and replay.returncode == 0
        waited = waiter.communicate(timeout=150)[0]
        recorder.send_signal(signal.SIGINT)
        got = json.loads(recorder.communicate(timeout=30)[0].strip().splitlines()[-1])
    finally:
        log = stop(node)
    assert waited.strip() == "seen", waited + log
    stamps = [tuple(p["stamp"]) for p in got["poses"]]
    assert stamps and set(stamps) <= recorded, "outputs carry the recording's stamps"
    assert any(b < a for a, b in zip(stamps, stamps[1:])), "frames of the second loop were processed too"
    assert "jumped back" in log, log
    assert ("lag the clock by a steady" in log) == (how == "keep-stamps"), log
