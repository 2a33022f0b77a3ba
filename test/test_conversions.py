"""Image / CameraInfo / Pose conversions at the ROS boundary: every malformed field gives ImageConversionError."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, Image

from densefusion_ros.geometry import quat_to_matrix
from densefusion_ros.ros.conversions import (
    ENCODINGS,
    ImageConversionError,
    InputError,
    camera_info_msg,
    camera_info_to_k,
    color_to_rgb,
    compressed_to_image,
    decode_compressed,
    depth_to_metres_msg,
    image_to_numpy,
    numpy_to_image,
    pose_msg,
)
from tools import synthetic


def raw(h, w, enc, step, data, big=0):
    msg = Image(height=h, width=w, encoding=enc, step=step, is_bigendian=big)
    msg.data = bytes(data)
    return msg


def test_padded_step_is_decoded():
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    depth = np.arange(35, dtype=np.uint16).reshape(5, 7) * 100
    assert np.array_equal(color_to_rgb(synthetic.padded(numpy_to_image(rgb, "rgb8"), 11)), rgb)
    metres, enc = depth_to_metres_msg(synthetic.padded(numpy_to_image(depth, "16UC1"), 3))  # odd padding for 2-byte pixels
    assert enc == "16UC1" and np.allclose(metres, depth / 1000.0)


@pytest.mark.parametrize("encoding, array", [
    ("rgb8", np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)),
    ("bgra8", np.arange(5 * 7 * 4, dtype=np.uint8).reshape(5, 7, 4)),
    ("16UC1", np.arange(35, dtype=np.uint16).reshape(5, 7) * 100),
    ("32FC1", np.linspace(0.3, 2.0, 35, dtype=np.float32).reshape(5, 7)),
])
def test_rosbags_messages_decode_as_rclpy_ones(encoding, array):
    """One decoder for both kinds: an Image read with the rosbags type store (the node's raw inputs, the bag reader)
    gives the pixels that the rclpy message gives, padding included."""
    from rclpy.serialization import serialize_message

    from densefusion_ros.ros.cdr import typestore

    msg = synthetic.padded(numpy_to_image(array, encoding), 5)
    decoded = typestore().deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/Image")
    assert not isinstance(decoded, Image)
    if encoding in ("rgb8", "bgra8"):
        assert np.array_equal(color_to_rgb(decoded), color_to_rgb(msg))
        assert np.array_equal(color_to_rgb(msg), array[..., 2::-1] if encoding == "bgra8" else array)
    else:
        assert np.array_equal(depth_to_metres_msg(decoded)[0], depth_to_metres_msg(msg)[0])


def test_compressed_images_decode_to_their_recorded_encoding():
    """As image_transport's compressed plugin records them: colour JPEG in its encoding's channel order, depth PNG exact."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    red = np.zeros((8, 10, 3), np.uint8)
    red[..., 0] = 200
    jpg = cv2.imencode(".jpg", red[..., ::-1])[1].tobytes()  # OpenCV encodes BGR
    pixels, encoding = decode_compressed("rgb8; jpeg compressed bgr8", jpg)
    assert encoding == "rgb8" and np.abs(pixels.astype(int) - red).max() <= 2
    depth = np.arange(80, dtype=np.uint16).reshape(8, 10) * 700
    msg = CompressedImage(format="16UC1; png compressed mono16", data=cv2.imencode(".png", depth)[1].tobytes())
    msg.header.frame_id = "cam"
    image = compressed_to_image(msg)
    assert image.encoding == "16UC1" and image.header == msg.header
    assert np.array_equal(image_to_numpy(image), depth)
    with pytest.raises(ImageConversionError, match="cannot decode"):
        decode_compressed("rgb8; jpeg compressed bgr8", b"not an image")


def test_camera_info_of_a_pinhole():
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    msg = camera_info_msg(K, 480, 640)
    assert (msg.height, msg.width, msg.distortion_model) == (480, 640, "plumb_bob") and not np.any(msg.d)
    assert np.array_equal(camera_info_to_k(msg), K)
    assert np.array_equal(np.reshape(msg.p, (3, 4)), np.hstack([K, np.zeros((3, 1))])) and np.array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))


def test_bgr_and_big_endian():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(color_to_rgb(numpy_to_image(rgb[..., ::-1], "bgr8")), rgb)
    depth = np.array([[1, 258], [65535, 600]], np.uint16)
    msg = raw(2, 2, "16UC1", 4, depth.astype(">u2").tobytes(), big=1)
    assert np.array_equal(image_to_numpy(msg), depth)


@pytest.mark.parametrize("msg, reason, text", [
    (raw(2, 2, "yuv422", 4, b"\0" * 8), "encoding", "encoding 'yuv422'"),
    (raw(0, 0, "rgb8", 0, b""), "empty", "empty (0x0)"),
    (raw(100_000, 100_000, "rgb8", 300_000, b"\0" * 10), "too large", "100000x100000 has more than max_pixels"),
    (raw(2, 4, "16UC1", 7, b"\0" * 14), "step", "step 7 is less than one row"),
    (raw(2, 4, "rgb8", 16, b"\0" * 24), "data size", "data has 24 bytes but rgb8 4x2 with step 16 needs step*height = 32"),
    (raw(2, 4, "rgb8", 12, b"\0" * 25), "data size", "needs step*height = 24"),
    (raw(2, 4, "rgb8", 12, b""), "data size", "data has 0 bytes"),
])
def test_malformed_images_name_the_problem(msg, reason, text):
    with pytest.raises(ImageConversionError) as e:
        image_to_numpy(msg)
    assert e.value.reason == reason and text in str(e.value)


def test_role_encodings():
    with pytest.raises(ImageConversionError, match="colour image has encoding '32FC1'"):
        color_to_rgb(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ImageConversionError, match="depth image has encoding 'rgb8'"):
        depth_to_metres_msg(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


@pytest.mark.parametrize("k, text", [
    ([0.0] * 9, "all zeros"), ([np.nan, 0, 1, 0, 1, 1, 0, 0, 1], "fx=nan"), ([500, 0, 1, 0, -5, 1, 0, 0, 1], "fy=-5"),
    ([500, 0, 1, 0, 500, 1, 0, 0, 0], "last row"), ([np.inf, 0, 1, 0, 500, 1, 0, 0, 1], "fx=inf"),
])
def test_unusable_k(k, text):
    info = CameraInfo()
    info.k = [float(v) for v in k]
    with pytest.raises(InputError, match="camera_info K is unusable") as e:
        camera_info_to_k(info)
    assert text in str(e.value) and e.value.reason == "intrinsics"


def test_pose_msg_quaternion_is_unit_and_matches():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        R = quat_to_matrix(q / np.linalg.norm(q))
        noisy = R + rng.normal(scale=1e-4, size=(3, 3))  # not exactly orthonormal
        p = pose_msg(noisy, np.array([0.1, 0.2, 0.3]))
        xyzw = np.array([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
        assert abs(xyzw @ xyzw - 1) < 1e-12
        assert np.allclose(quat_to_matrix(np.roll(xyzw, 1)), R, atol=1e-3)
    with pytest.raises(ValueError):
        pose_msg(np.full((3, 3), np.nan), np.zeros(3))


@st.composite
def images(draw):
    if draw(st.booleans()):  # well-formed, with random padding and byte order
        enc = draw(st.sampled_from(sorted(ENCODINGS)))
        dtype, channels = ENCODINGS[enc]
        h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        step = w * channels * dtype.itemsize + draw(st.integers(0, 5))
        return raw(h, w, enc, step, draw(st.binary(min_size=step * h, max_size=step * h)), big=draw(st.booleans()))
    enc = draw(st.one_of(st.sampled_from(sorted(ENCODINGS)), st.text(max_size=8)))
    h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    if draw(st.booleans()):
        h, w = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    step = draw(st.integers(0, 2**32 - 1) | st.integers(0, 64))
    data = draw(st.binary(max_size=600))
    return raw(h, w, enc, step, data, big=draw(st.booleans()))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(images())
def test_any_header_gives_an_array_or_image_conversion_error(msg):
    try:
        out = image_to_numpy(msg)
    except ImageConversionError as e:
        assert e.reason in {"encoding", "empty", "too large", "step", "data size"}
        return
    dtype, channels = ENCODINGS[msg.encoding]
    assert out.dtype == dtype and out.shape[:2] == (msg.height, msg.width)
    assert out.shape == ((msg.height, msg.width, channels) if channels > 1 else (msg.height, msg.width))
    assert len(msg.data) == msg.step * msg.height


def test_a_system_module_that_does_not_import_is_not_used(tmp_path, monkeypatch, caplog):
    """An installed module that fails on import (as an apt cv_bridge built for numpy 1.x does under numpy 2) is
    passed over for the in-package equivalent, with one warning that names the error."""
    from densefusion_ros.ros.conversions import use_system_module

    (tmp_path / "broken_bridge").mkdir()
    (tmp_path / "broken_bridge" / "__init__.py").write_text(
        'raise ImportError("numpy.core.multiarray failed to import")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DENSEFUSION_ROS_BUILTIN_COMPAT", raising=False)
    with caplog.at_level("WARNING"):
        assert use_system_module("broken_bridge") is False
    assert "broken_bridge is installed but does not import" in caplog.text and "multiarray" in caplog.text
    assert use_system_module("json") is True
    monkeypatch.setenv("DENSEFUSION_ROS_BUILTIN_COMPAT", "1")
    assert use_system_module("json") is False
