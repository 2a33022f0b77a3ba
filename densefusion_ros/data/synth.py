"""``densefusion-ros synth``: render a synthetic BOP dataset of the catalog objects with pybullet.

Each scene: a table (``pybullet_data/table``, top at z = 0.625 m) on a floor, the catalog objects
(each at most once per scene, each present with probability ``object_prob``) and 2-6 distractors
(``pybullet_data/random_urdfs`` blobs and primitive boxes, cylinders, spheres that are not in the
catalog) are dropped with random poses into a 0.26 x 0.22 m area and simulated until they rest.
Then ``frames_per_scene`` cameras look at the pile from 0.4-1.2 m, 20-80 deg elevation, with new
lighting each frame. Every scene is rebuilt from scratch with its own random stream
``default_rng([seed, scene_id])``, so a scene is repeatable on its own.

With ``--sequence`` (:class:`SequenceConfig`) a scene is instead one 30 Hz video, im_ids 0..F-1 in
time order: a hand-held camera sweeps an arc around the pile at a slowly varying distance and
elevation, with a few mm of smooth shake, and once pans aside and back so that objects leave the
view; one or two catalog objects are pushed along the table and turned about the vertical; often a
distractor is carried through the view in front of the pile; the lighting stays fixed. The bodies
move kinematically (no physics after the drop). ``scene_camera.json`` then also holds each frame's
``stamp`` (im_id / fps, seconds) and camera pose (``cam_R_w2c``, ``cam_t_w2c``).

Conventions:
    * Object frame = the catalog's scaled mesh frame. Bodies are created with
      ``baseInertialFramePosition`` = the mesh's box centre (sensible physics); the GT pose is the
      link frame, ``world_T_link = world_T_com * inv(link_T_com)`` with ``link_T_com`` read back
      from ``getDynamicsInfo`` (``getBasePositionAndOrientation`` reports the COM frame).
    * Camera = OpenCV optical frame (x right, y down, z forward); the OpenGL view matrix is
      ``diag(1, -1, -1, 1) @ cam_T_world`` and the projection is built exactly from ``K`` (pixel
      centres at integer coordinates), see :func:`projection_from_K`. TinyRenderer rasterises half a
      pixel off from OpenGL; :data:`TINY_PIXEL_OFFSET` corrects it (docs/design_notes.md,
      'data.synth: TinyRenderer pixel offset').
    * Depth is z along the optical axis in metres, ``far*near / (far - (far-near)*buf)``, then
      RealSense-like noise (:func:`realsense_depth_noise`), stored as uint16 mm (depth_scale 1.0).
    * Visible masks come from the segmentation buffer; full silhouettes (``mask/``) are rasterised
      from the catalog mesh with the GT pose (4x4 supersampled, pixel-centre rule).
    * An instance is written when its silhouette touches the image, even if fully occluded
      (visib_fract 0), as in BOP; training filters on ``visib_fract`` / ``px_count_visib``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from densefusion_ros.catalog import Catalog, ObjectInfo
from densefusion_ros.data.bop import BopWriter, export_models, write_catalog_copy
from densefusion_ros.frame import GtObject
from densefusion_ros.geometry import compose, project, transform_points

log = logging.getLogger(__name__)

#: Intel RealSense D435 colour stream at 640x480: typical factory intrinsics (fx = fy ~ 605-617 by unit,
#: principal point near the image centre); 615 is a representative value, not one calibrated unit.
D435_COLOR_640x480 = {"fx": 615.0, "fy": 615.0, "cx": 320.0, "cy": 240.0}

#: (du, dv) added to (cx, cy) in the projection for TinyRenderer, whose pixel grid is offset by half a
#: pixel from OpenGL's (EGL needs none); see docs/design_notes.md, 'data.synth: TinyRenderer pixel offset'.
TINY_PIXEL_OFFSET = (-0.5, 0.5)

TABLE_TOP_Z = 0.625
#: Half the size of the table top (x, y) in metres; it is centred on the world origin.
TABLE_HALF_SIZE = (0.75, 0.5)
#: Pushed objects end at least this far (m, centre of mass) inside the table top's edges.
TABLE_MARGIN = 0.08
#: Where a sequence's carried distractor waits outside its pass: under the floor, never seen (m).
PARKED = np.array([0.0, 0.0, -5.0])
#: The stereo baseline used for the RealSense occlusion shadow (D435: 50 mm).
D435_BASELINE_M = 0.050


@dataclass
class SynthConfig:
    """Every setting of a run; saved as ``synth_config.json``. Lengths in metres, angles in degrees."""

    width: int = 640
    height: int = 480
    fx: float = D435_COLOR_640x480["fx"]
    fy: float = D435_COLOR_640x480["fy"]
    cx: float = D435_COLOR_640x480["cx"]
    cy: float = D435_COLOR_640x480["cy"]
    near: float = 0.05
    far: float = 6.0
    renderer: str = "auto"  # auto | egl | tiny
    cam_distance: tuple[float, float] = (0.4, 1.2)
    cam_elevation_deg: tuple[float, float] = (20.0, 80.0)
    cam_roll_deg: float = 10.0
    target_jitter: float = 0.05
    drop_area: tuple[float, float] = (0.26, 0.22)  # tight enough that objects partly hide each other
    object_prob: float = 0.9
    distractors: tuple[int, int] = (2, 6)
    color_jitter: float = 0.06
    noise: bool = True
    depth_min: float = 0.2
    depth_max: float = 3.0
    axial_sigma: tuple[float, float] = (0.0005, 0.003)  # sigma(z) = a + b * z^2
    edge_drop_prob: float = 0.5
    dropout_prob: float = 0.002
    rgb_noise_std: float = 3.0
    settle_max_steps: int = 960
    export_models: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class SequenceConfig:
    """The motions of a ``--sequence`` video; saved in ``synth_config.json``.

    Lengths in metres, angles in degrees, times in seconds, frequencies in Hz; pairs are the
    ``(low, high)`` of uniform draws. The speeds are those of a person filming a table by hand
    (docs/design_notes.md, 'data.synth: camera speeds').
    """

    fps: int = 30
    arc_deg: tuple[float, float] = (40.0, 120.0)  # azimuth swept over the sequence
    max_arc_speed_deg_s: float = 30.0  # sweep speed cap: short sequences sweep less
    cam_distance: tuple[float, float] = (0.45, 1.0)
    cam_elevation_deg: tuple[float, float] = (25.0, 70.0)
    distance_swing: float = 0.1  # slow +- change of the distance, inside cam_distance
    elevation_swing_deg: float = 8.0  # slow +- change of the elevation, inside cam_elevation_deg
    slow_hz: tuple[float, float] = (0.05, 0.3)  # distance, elevation and look-at wander
    shake_m: float = 0.003  # hand shake of the camera position
    shake_deg: float = 0.3  # hand shake of the viewing direction and roll
    shake_hz: tuple[float, float] = (1.0, 4.0)
    target_wander: float = 0.02  # slow drift of the look-at point around the pile
    look_away: tuple[float, float] = (0.6, 1.1)  # once, the view pans aside by this x its half width at the pile
    look_away_s: tuple[float, float] = (1.5, 3.0)  # ... and back (0.14-0.26 m aside at 0.45 m, 0.3-0.57 at 1 m)
    pushed: tuple[int, int] = (1, 2)  # catalog objects pushed per sequence
    push: tuple[float, float] = (0.10, 0.25)  # push length along the table
    push_s: tuple[float, float] = (1.0, 3.0)
    push_turn_deg: float = 90.0  # largest turn about the vertical during a push
    pass_prob: float = 0.8  # chance that a distractor is carried through the view in front of the pile
    pass_s: tuple[float, float] = (1.0, 2.0)
    pass_fraction: tuple[float, float] = (0.4, 0.7)  # where it crosses the line pile -> camera
    pass_min_height: float = 0.15  # of its path above the table top


# ---------------------------------------------------------------------------------------------
# Camera geometry


def projection_from_K(
    K: np.ndarray, width: int, height: int, near: float, far: float, pixel_offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The OpenGL projection ``(4, 4)`` (row-major) that renders exactly the pinhole camera ``K``.

    Convention: pixel ``(u, v)`` centres at integer coordinates, ``u = fx X/Z + cx`` with the
    OpenCV camera frame; the OpenGL camera looks along -z with y up and row 0 at the image top
    (pybullet flips the buffer). ``pixel_offset`` shifts the principal point for a renderer whose
    raster is offset (see :data:`TINY_PIXEL_OFFSET`). pybullet wants ``P.T.ravel()`` (column-major).
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + pixel_offset[0], K[1, 2] + pixel_offset[1]
    return np.array(
        [
            [2 * fx / width, 2 * K[0, 1] / width, 1 - 2 * (cx + 0.5) / width, 0.0],
            [0.0, 2 * fy / height, 2 * (cy + 0.5) / height - 1, 0.0],
            [0.0, 0.0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


def view_from_extrinsics(R_cw: np.ndarray, t_cw: np.ndarray) -> np.ndarray:
    """The OpenGL view matrix ``(4, 4)`` (row-major) of an OpenCV camera ``p_cam = R_cw p_world + t_cw``."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_cw, t_cw
    return np.diag([1.0, -1.0, -1.0, 1.0]) @ T


def depth_buffer_to_metres(buf: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL depth buffer values in [0, 1] to z along the optical axis (metres); 1 (nothing) -> far."""
    buf = np.asarray(buf, dtype=np.float64)
    return (far * near / (far - (far - near) * buf)).astype(np.float32)


def look_at(eye: np.ndarray, target: np.ndarray, roll_rad: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV extrinsics ``(R_cw, t_cw)`` of a camera at ``eye`` looking at ``target``, world z up."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:  # looking straight down
        x = np.array([1.0, 0.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll_rad), np.sin(roll_rad)
    x, y = c * x + s * y, -s * x + c * y
    R_wc = np.stack([x, y, z], axis=1)
    return R_wc.T, -R_wc.T @ eye


def rasterise_silhouette(
    vertices_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int, supersample: int = 4
) -> tuple[np.ndarray, list[int]]:
    """The full silhouette of a mesh in the image and its unclipped BOP box ``[x, y, w, h]``.

    A pixel is inside when at least half of its ``supersample``^2 sub-pixel centres are covered
    (close to the pixel-centre rule that OpenGL uses). Vertices must be in front of the camera.
    """
    mask = np.zeros((height, width), dtype=bool)
    uv = project(vertices_cam, K)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    bbox = [int(np.floor(lo[0] + 0.5)), int(np.floor(lo[1] + 0.5))]
    bbox += [int(np.floor(hi[0] + 0.5)) - bbox[0] + 1, int(np.floor(hi[1] + 0.5)) - bbox[1] + 1]
    c0, r0 = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    c1, r1 = min(int(np.ceil(hi[0])) + 1, width), min(int(np.ceil(hi[1])) + 1, height)
    if c0 >= c1 or r0 >= r1 or np.any(vertices_cam[:, 2] <= 0):
        return mask, bbox
    s = supersample
    canvas = np.zeros(((r1 - r0) * s, (c1 - c0) * s), np.uint8)
    # Sub-pixel j of the region has its centre at c0 - 0.5 + (j + 0.5) / s, in 1/16 fixed point.
    sub = np.round(((uv - [c0, r0] + 0.5) * s - 0.5) * 16).astype(np.int32)
    tris = sub[faces]
    keep = (tris[:, :, 0].max(1) >= 0) & (tris[:, :, 1].max(1) >= 0)
    keep &= (tris[:, :, 0].min(1) < canvas.shape[1] * 16) & (tris[:, :, 1].min(1) < canvas.shape[0] * 16)
    for tri in tris[keep]:
        cv2.fillConvexPoly(canvas, tri, 1, lineType=cv2.LINE_8, shift=4)
    # fillConvexPoly also sets sub-pixels its edges touch: a half-sub-pixel dilation, ~1/8 px here.
    cover = canvas.reshape(r1 - r0, s, c1 - c0, s).sum(axis=(1, 3))
    mask[r0:r1, c0:c1] = cover * 2 >= s * s
    return mask, bbox


# ---------------------------------------------------------------------------------------------
# Sequences


def smoothstep(x: np.ndarray) -> np.ndarray:
    """``3x^2 - 2x^3``: 0 -> 1 on [0, 1] with zero slope at both ends (a push that starts and stops softly)."""
    return x * x * (3.0 - 2.0 * x)


def yaw_rotated(q: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """The xyzw quaternion ``q`` turned by ``yaw`` (rad, one or an array) about the world z axis: ``q_z(yaw) q``."""
    yaw = np.atleast_1d(yaw)
    c, s = np.cos(yaw / 2), np.sin(yaw / 2)
    x, y, z, w = q
    return np.stack([c * x - s * y, c * y + s * x, c * z + s * w, c * w - s * z], axis=-1)


def _smooth_signal(rng: np.random.Generator, times: np.ndarray, hz: tuple[float, float], dims: int = 1,
                   terms: int = 3) -> np.ndarray:
    """A smooth random ``(len(times), dims)`` signal in [-1, 1]: the mean of ``terms`` sines with random
    frequencies in ``hz`` and phases. Drift and hand shake are smooth in time, unlike noise per frame."""
    freq = rng.uniform(*hz, (terms, dims))
    phase = rng.uniform(0, 2 * np.pi, (terms, dims))
    return np.sin(2 * np.pi * freq * times[:, None, None] + phase).mean(axis=1)


def _swing(rng: np.random.Generator, times: np.ndarray, bounds: tuple[float, float], swing: float,
           hz: tuple[float, float]) -> np.ndarray:
    """A value drawn from ``bounds`` that varies slowly by up to +-``swing`` over ``times``, staying in ``bounds``."""
    return rng.uniform(bounds[0] + swing, bounds[1] - swing) + swing * _smooth_signal(rng, times, hz)[:, 0]


def camera_trajectory(
    rng: np.random.Generator, centre: np.ndarray, times: np.ndarray, cfg: SynthConfig, seq: SequenceConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """OpenCV extrinsics ``(R_cw, t_cw)`` at ``times`` (s) of a hand-held camera filming the pile at ``centre``.

    The camera sweeps ``arc_deg`` of azimuth around ``centre`` at a constant speed of at most
    ``max_arc_speed_deg_s`` (a clip of a longer take: no start from rest) at a slowly varying distance
    and elevation, with a roll of up to ``cfg.cam_roll_deg`` and a few mm / tenths of a degree of smooth
    shake. It looks at ``centre`` plus a slow wander of ``target_wander``, and once pans sideways by
    ``look_away`` times the half width of the view at the pile and back (sin^2 over ``look_away_s``), so
    that objects leave the view partly or fully.
    """
    duration = max(times[-1], 1.0 / seq.fps)
    sweep = min(np.deg2rad(rng.uniform(*seq.arc_deg)), np.deg2rad(seq.max_arc_speed_deg_s) * duration)
    azim = rng.uniform(0, 2 * np.pi) + rng.choice([-1.0, 1.0]) * sweep * times / duration
    dist = _swing(rng, times, seq.cam_distance, seq.distance_swing, seq.slow_hz)
    elev = np.deg2rad(_swing(rng, times, seq.cam_elevation_deg, seq.elevation_swing_deg, seq.slow_hz))
    away_s = rng.uniform(*seq.look_away_s)
    away_start = rng.uniform(0.0, max(times[-1] - away_s, 0.0))
    away = rng.choice([-1.0, 1.0]) * rng.uniform(*seq.look_away) * dist * cfg.width / (2 * cfg.fx)
    away *= np.sin(np.pi * np.clip((times - away_start) / away_s, 0.0, 1.0)) ** 2
    across = np.stack([-np.sin(azim), np.cos(azim), np.zeros_like(azim)], axis=1)  # horizontal, across the view
    target = centre + away[:, None] * across
    target += seq.target_wander * _smooth_signal(rng, times, seq.slow_hz, 3) * [1.0, 1.0, 0.0]
    direction = np.stack([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)], axis=1)
    eye = centre + dist[:, None] * direction + seq.shake_m * _smooth_signal(rng, times, seq.shake_hz, 3)
    target += np.tan(np.deg2rad(seq.shake_deg)) * dist[:, None] * _smooth_signal(rng, times, seq.shake_hz, 3)
    roll = np.deg2rad(rng.uniform(-cfg.cam_roll_deg, cfg.cam_roll_deg)
                      + seq.shake_deg * _smooth_signal(rng, times, seq.shake_hz)[:, 0])
    return [look_at(e, t, r) for e, t, r in zip(eye, target, roll)]


# ---------------------------------------------------------------------------------------------
# Sensor noise


def realsense_depth_noise(
    depth_m: np.ndarray, K: np.ndarray, rng: np.random.Generator, cfg: SynthConfig
) -> np.ndarray:
    """RealSense-D435-like degradation of a perfect depth image (metres in, metres out, 0 = hole).

    * axial noise with ``sigma(z) = a + b z^2`` (a, b = ``cfg.axial_sigma``, scaled by U(0.5, 1.5)
      per frame), half of it spatially correlated over ~8 px;
    * the stereo occlusion shadow: pixels the right imager (``D435_BASELINE_M`` to the right) cannot
      see are holes, which leaves a band left of near objects as on a real D435;
    * holes at depth discontinuities (``edge_drop_prob`` per edge pixel), speckle dropouts
      (``dropout_prob``) and 0-3 elliptic blobs;
    * zero outside ``[depth_min, depth_max]``.
    """
    h, w = depth_m.shape
    z = depth_m.astype(np.float64)
    valid = (z > 0) & (z < cfg.far * 0.999)
    a, b = cfg.axial_sigma
    sigma = (a + b * z**2) * rng.uniform(0.5, 1.5)
    white = rng.standard_normal((h, w))
    coarse = cv2.resize(rng.standard_normal((max(h // 8, 1), max(w // 8, 1))), (w, h), interpolation=cv2.INTER_LINEAR)
    noisy = z + sigma * (np.sqrt(0.5) * white + np.sqrt(0.5) * coarse / max(coarse.std(), 1e-6))

    holes = ~valid
    # Stereo shadow: pixel x (disparity d) is hidden from the right imager when some pixel x' > x has
    # x' - d(x') < x - d(x), i.e. a nearer surface to its right covers it.
    disparity = np.where(valid, K[0, 0] * D435_BASELINE_M / np.maximum(z, 1e-6), 0.0)
    xs = np.arange(w, dtype=np.float64)[None, :]
    right_pos = xs - disparity
    suffix_min = np.minimum.accumulate(right_pos[:, ::-1], axis=1)[:, ::-1]
    covered = np.full_like(right_pos, np.inf)
    covered[:, :-1] = suffix_min[:, 1:]
    holes |= covered < right_pos - 0.5
    # Discontinuities: a jump of more than 3 % of the depth within 3x3.
    zf = np.where(valid, z, 0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    zmax = cv2.dilate(zf, kernel)
    zmin = cv2.erode(np.where(valid, zf, np.float32(1e3)), kernel)
    edge = (zmax - zmin) > 0.03 * np.maximum(zf, 0.1)
    holes |= edge & (rng.random((h, w)) < cfg.edge_drop_prob)
    holes |= rng.random((h, w)) < cfg.dropout_prob
    blobs = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(0, 4)):
        center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
        cv2.ellipse(blobs, center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    holes |= blobs > 0
    holes |= (noisy < cfg.depth_min) | (noisy > cfg.depth_max)
    return np.where(holes, 0.0, noisy).astype(np.float32)


def depth_to_mm_uint16(depth_m: np.ndarray) -> np.ndarray:
    """Quantise metres to uint16 millimetres (0 stays 0; clipped at 65.535 m)."""
    return np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)


# ---------------------------------------------------------------------------------------------
# pybullet


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence C-level stdout (pybullet and the EGL plugin print there); stderr is kept."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


def _import_pybullet():
    with quiet_stdout():
        import pybullet
        import pybullet_data
        from pybullet_utils.bullet_client import BulletClient
    return pybullet, pybullet_data, BulletClient


def _hsv_jitter(rgb: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """A colour near ``rgb`` (floats in [0, 1]): small hue shift, larger saturation/value changes."""
    hsv = cv2.cvtColor(np.float32(rgb).reshape(1, 1, 3), cv2.COLOR_RGB2HSV).reshape(3)
    hsv[0] = (hsv[0] + rng.uniform(-1, 1) * amount * 60.0) % 360.0
    hsv[1] = np.clip(hsv[1] * (1 + rng.uniform(-2, 2) * amount), 0, 1)
    hsv[2] = np.clip(hsv[2] * (1 + rng.uniform(-3, 1) * amount), 0.05, 1)
    return cv2.cvtColor(hsv.reshape(1, 1, 3).astype(np.float32), cv2.COLOR_HSV2RGB).reshape(3)


def _make_textures(folder: Path, rng: np.random.Generator, count: int = 24, size: int = 256) -> list[Path]:
    """Procedural textures for the table and floor: noise, checkers, stripes, blotches, wood-like grain.

    The table maps one texture over its 1.5 x 1.0 m top, so a texel is ~6 mm: the patterns are fine.
    """
    paths = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(count):
        c1 = rng.uniform(0, 255, 3)
        c2 = np.clip(c1 + rng.choice([-1.0, 1.0], 3) * rng.uniform(40, 140, 3), 0, 255)  # visible contrast
        kind = i % 5
        if kind == 0:  # blurred noise
            t = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), rng.uniform(0.7, 3))
        elif kind == 1:  # checker
            n = int(rng.integers(4, 40))
            t = ((xx * n // size + yy * n // size) % 2).astype(np.float32)
        elif kind == 2:  # stripes
            angle = rng.uniform(0, np.pi)
            t = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / rng.uniform(3, 24))
        elif kind == 3:  # blotches
            t = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), rng.uniform(6, 16))
            t = (t > np.median(t)).astype(np.float32)
        else:  # wood-like grain
            warp = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 12) * 40
            t = 0.5 + 0.5 * np.sin((yy + warp) * 2 * np.pi / rng.uniform(4, 12))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = t[..., None] * c1 + (1 - t[..., None]) * c2 + rng.normal(0, 5, (size, size, 3))
        path = folder / f"tex_{i:02d}.png"
        cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
        paths.append(path)
    return paths


@dataclass
class _Placed:
    obj: ObjectInfo
    body: int
    R_wo: np.ndarray
    t_wo: np.ndarray


@dataclass
class _Look:
    """Lighting and exposure of an image: drawn per view, or once for a whole video."""

    render_kwargs: dict  # the light arguments of getCameraImage
    gain: np.ndarray | float  # RGB gain: exposure and, with EGL, the light colour
    noise_std: float  # RGB noise, grey levels


@dataclass
class _Motion:
    """A body moved kinematically: its base (centre-of-mass) pose per frame, world frame."""

    body: int
    pos: np.ndarray  # (F, 3) metres
    orn: np.ndarray  # (F, 4) quaternions xyzw


@dataclass
class _SequencePlan:
    """Everything drawn for a video of one scene, before its frames are rendered."""

    cameras: list[tuple[np.ndarray, np.ndarray]]  # (R_cw, t_cw) per frame
    look: _Look
    motions: list[_Motion]


class SceneRenderer:
    """One pybullet DIRECT client that builds scenes and renders RGB, depth and segmentation."""

    def __init__(self, catalog: Catalog, cfg: SynthConfig) -> None:
        self.catalog = catalog
        self.cfg = cfg
        self.p, self.pd, BulletClient = _import_pybullet()
        with quiet_stdout():
            self.client = BulletClient(connection_mode=self.p.DIRECT)
        self.data_path = Path(self.pd.getDataPath())
        self.client.setAdditionalSearchPath(str(self.data_path))
        self.renderer_name = self._choose_renderer(cfg.renderer)
        self.render_flag = self.p.ER_BULLET_HARDWARE_OPENGL if self.renderer_name == "egl" else self.p.ER_TINY_RENDERER
        offset = (0.0, 0.0) if self.renderer_name == "egl" else TINY_PIXEL_OFFSET
        self.P = projection_from_K(cfg.K, cfg.width, cfg.height, cfg.near, cfg.far, offset)
        self._tmp = tempfile.TemporaryDirectory(prefix="df_synth_")
        tmp = Path(self._tmp.name)
        cv2.imwrite(str(tmp / "white.png"), np.full((4, 4, 3), 255, np.uint8))
        self.white_texture = tmp / "white.png"
        self.textures = _make_textures(tmp, np.random.default_rng(12345))
        for name in ("tex256.png", "checker_blue.png", "uvmap.png"):  # small ones: textures are never freed
            if (self.data_path / name).is_file():
                self.textures.append(self.data_path / name)
        self.distractor_urdfs = sorted(self.data_path.glob("random_urdfs/*/*.urdf"))
        self.placed: list[_Placed] = []
        self.table_body = -1  # body ids of the current scene
        self.white_texture_id = -1

    def _choose_renderer(self, wanted: str) -> str:
        if wanted not in ("auto", "egl", "tiny"):
            raise ValueError(f"renderer must be auto, egl or tiny, not {wanted!r}")
        if wanted == "tiny":
            return "tiny"
        import importlib.util

        spec = importlib.util.find_spec("eglRenderer")  # the plugin pybullet installs as a module
        plugin = -1
        if spec is not None and spec.origin:
            with quiet_stdout():
                plugin = self.client.loadPlugin(spec.origin, "_eglRendererPlugin")
        if plugin < 0:
            if wanted == "egl":
                raise RuntimeError("the pybullet EGL renderer plugin did not load")
            log.warning("EGL renderer plugin unavailable: using TinyRenderer (slower)")
            return "tiny"
        return "egl"

    def close(self) -> None:
        with quiet_stdout():
            try:
                self.client.disconnect()
            except Exception:  # already gone
                pass
        self._tmp.cleanup()

    def __enter__(self) -> "SceneRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- scene --------------------------------------------------------------------------------

    def build_scene(self, rng: np.random.Generator) -> list[_Placed]:
        """A fresh world with the catalog objects and distractors dropped onto the table, settled."""
        with quiet_stdout():  # the EGL plugin prints when it re-creates its scene
            return self._build_scene(rng)

    def _build_scene(self, rng: np.random.Generator) -> list[_Placed]:
        c = self.client
        c.resetSimulation()
        c.setGravity(0, 0, -9.81)
        c.setTimeStep(1.0 / 240.0)
        floor = c.loadURDF("plane.urdf", useFixedBase=True)
        table = c.loadURDF("table/table.urdf", useFixedBase=True)
        white = c.loadTexture(str(self.white_texture))
        self.table_body, self.white_texture_id = table, white
        for body, keep_prob in ((floor, 0.0), (table, 0.3)):
            if rng.random() >= keep_prob:
                tex = c.loadTexture(str(self.textures[rng.integers(len(self.textures))]))
                c.changeVisualShape(body, -1, textureUniqueId=tex)
            tint = _hsv_jitter(np.ones(3) * rng.uniform(0.6, 1.0), rng, 0.1)
            c.changeVisualShape(body, -1, rgbaColor=[*tint.tolist(), 1.0])

        ax, ay = self.cfg.drop_area
        chosen = [o for o in self.catalog if rng.random() < self.cfg.object_prob]
        if not chosen:
            chosen = [self.catalog.objects[rng.integers(len(self.catalog))]]
        drops: list[tuple[str, object]] = [("object", o) for o in chosen]
        drops += [("distractor", None)] * int(rng.integers(self.cfg.distractors[0], self.cfg.distractors[1] + 1))
        order = rng.permutation(len(drops))
        bodies: list[tuple[ObjectInfo, int]] = []
        for k, i in enumerate(order):
            kind, obj = drops[i]
            pos = [rng.uniform(-ax / 2, ax / 2), rng.uniform(-ay / 2, ay / 2), TABLE_TOP_Z + 0.1 + 0.15 * k]
            orn = self._random_quat(rng)
            if kind == "object":
                bodies.append((obj, self._add_object(obj, pos, orn, rng, white)))
            else:
                self._add_distractor(pos, orn, rng, white)
        self._settle()
        self.placed = []
        for obj, body in bodies:
            R_wo, t_wo = self.link_pose(body)
            if t_wo[2] > TABLE_TOP_Z - 0.05:
                self.placed.append(_Placed(obj, body, R_wo, t_wo))
            else:  # fell off the table: removed, so that no unannotated catalog object is ever seen
                self.client.removeBody(body)
        return self.placed

    @staticmethod
    def _random_quat(rng: np.random.Generator) -> list[float]:
        q = rng.standard_normal(4)
        return (q / np.linalg.norm(q)).tolist()  # xyzw, uniform on SO(3)

    def _add_object(self, obj: ObjectInfo, pos, orn, rng: np.random.Generator, white: int) -> int:
        c, p = self.client, self.p
        scale = np.asarray(obj.scale, dtype=np.float64).tolist()
        textured = bool(obj.extra.get("texture", False))
        base = np.ones(3) if textured or obj.color is None else np.asarray(obj.color[:3], dtype=np.float64)
        color = _hsv_jitter(base, rng, self.cfg.color_jitter) if not textured else base * rng.uniform(0.85, 1.0)
        rgba = [*np.asarray(color, dtype=float).tolist(), 1.0]
        vis = c.createVisualShape(p.GEOM_MESH, fileName=str(obj.mesh_path), meshScale=scale, rgbaColor=rgba,
                                  specularColor=[float(rng.uniform(0, 0.6))] * 3)
        col = c.createCollisionShape(p.GEOM_MESH, fileName=str(obj.mesh_path), meshScale=scale)
        body = c.createMultiBody(
            baseMass=float(obj.extra.get("mass", 0.15)),
            baseCollisionShapeIndex=col,
            baseVisualShapeIndex=vis,
            basePosition=pos,
            baseOrientation=orn,
            baseInertialFramePosition=obj.bbox_center.astype(np.float64).tolist(),
        )
        if not textured:  # replace any texture of the mesh's .mtl by white: the colour is the rgba
            c.changeVisualShape(body, -1, textureUniqueId=white)
        c.changeDynamics(body, -1, lateralFriction=0.8, rollingFriction=0.001, spinningFriction=0.001)
        return body

    def _add_distractor(self, pos, orn, rng: np.random.Generator, white: int) -> int:
        c, p = self.client, self.p
        color = [*rng.uniform(0.05, 1.0, 3).tolist(), 1.0]
        kind = rng.integers(4) if self.distractor_urdfs else 1 + rng.integers(3)
        if kind == 0:
            urdf = self.distractor_urdfs[rng.integers(len(self.distractor_urdfs))]
            body = c.loadURDF(str(urdf), pos, orn, globalScaling=float(rng.uniform(0.6, 1.2)))
        else:
            if kind == 1:
                he = rng.uniform(0.015, 0.06, 3).tolist()
                vis = c.createVisualShape(p.GEOM_BOX, halfExtents=he, rgbaColor=color)
                col = c.createCollisionShape(p.GEOM_BOX, halfExtents=he)
            elif kind == 2:
                radius, height = float(rng.uniform(0.015, 0.045)), float(rng.uniform(0.04, 0.16))
                vis = c.createVisualShape(p.GEOM_CYLINDER, radius=radius, length=height, rgbaColor=color)
                col = c.createCollisionShape(p.GEOM_CYLINDER, radius=radius, height=height)
            else:
                radius = float(rng.uniform(0.015, 0.045))
                vis = c.createVisualShape(p.GEOM_SPHERE, radius=radius, rgbaColor=color)
                col = c.createCollisionShape(p.GEOM_SPHERE, radius=radius)
            body = c.createMultiBody(0.1, col, vis, pos, orn)
        c.changeVisualShape(body, -1, rgbaColor=color, textureUniqueId=white)
        c.changeDynamics(body, -1, lateralFriction=0.8)
        return body

    def _settle(self) -> None:
        c = self.client
        bodies = [c.getBodyUniqueId(i) for i in range(c.getNumBodies())]
        for step in range(self.cfg.settle_max_steps):
            c.stepSimulation()
            if step % 24 == 23 and step > 120:
                moving = False
                for b in bodies:
                    lin, ang = c.getBaseVelocity(b)
                    pos, _ = c.getBasePositionAndOrientation(b)
                    if pos[2] > 0.0 and (np.linalg.norm(lin) > 5e-3 or np.linalg.norm(ang) > 5e-2):
                        moving = True
                        break
                if not moving:
                    return

    def link_pose(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` of the body's link frame (= the mesh frame) in the world."""
        c = self.client
        pos, orn = c.getBasePositionAndOrientation(body)  # the COM (inertial) frame
        info = c.getDynamicsInfo(body, -1)
        inv_pos, inv_orn = c.invertTransform(info[3], info[4])
        pos, orn = c.multiplyTransforms(pos, orn, inv_pos, inv_orn)
        return np.array(c.getMatrixFromQuaternion(orn)).reshape(3, 3), np.asarray(pos, dtype=np.float64)

    # -- cameras and images -------------------------------------------------------------------

    def pile_centre(self) -> np.ndarray:
        """The point cameras aim at (m): the objects' mean box centre in x, y, 3 cm above the table top."""
        centre = np.mean([pl.t_wo + pl.R_wo @ pl.obj.bbox_center for pl in self.placed], axis=0) if self.placed \
            else np.array([0.0, 0.0, TABLE_TOP_Z])
        centre[2] = TABLE_TOP_Z + 0.03
        return centre

    def sample_camera(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV extrinsics ``(R_cw, t_cw)`` looking at the objects on the table."""
        cfg = self.cfg
        target = self.pile_centre() + [*rng.normal(0, cfg.target_jitter, 2), 0.0]
        dist = rng.uniform(*cfg.cam_distance)
        elev = np.deg2rad(rng.uniform(*cfg.cam_elevation_deg))
        azim = rng.uniform(0, 2 * np.pi)
        eye = target + dist * np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
        return look_at(eye, target, np.deg2rad(rng.uniform(-cfg.cam_roll_deg, cfg.cam_roll_deg)))

    def sample_look(self, rng: np.random.Generator) -> _Look:
        """Random lighting and, with ``cfg.noise``, exposure gain and RGB noise level."""
        cfg = self.cfg
        elev, azim = rng.uniform(np.deg2rad(25), np.deg2rad(90)), rng.uniform(0, 2 * np.pi)
        light_dir = [np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)]
        light_color = rng.uniform(0.75, 1.0, 3)
        kwargs = {"lightDirection": light_dir, "lightDistance": 3.0}
        if self.renderer_name == "tiny":  # EGL ignores these; its light colour is applied as gain
            kwargs.update(lightColor=light_color.tolist(), shadow=int(rng.random() < 0.5),
                          lightAmbientCoeff=rng.uniform(0.3, 0.7), lightDiffuseCoeff=rng.uniform(0.4, 0.8),
                          lightSpecularCoeff=rng.uniform(0.0, 0.5))
        if not cfg.noise:
            return _Look(kwargs, 1.0, 0.0)
        gain = rng.uniform(0.8, 1.2) * (light_color / light_color.max() if self.renderer_name == "egl" else 1.0)
        return _Look(kwargs, gain, float(rng.uniform(0, cfg.rgb_noise_std)))

    def render(
        self, R_cw: np.ndarray, t_cw: np.ndarray, rng: np.random.Generator, look: _Look | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb uint8 (H, W, 3), depth metres float32 (H, W) without noise, seg int32 body ids)``.

        ``look`` fixes the lighting (a video's); by default each view draws its own.
        """
        cfg = self.cfg
        if look is None:
            look = self.sample_look(rng)
        with quiet_stdout():
            _, _, rgba, buf, seg = self.client.getCameraImage(
                cfg.width, cfg.height,
                viewMatrix=view_from_extrinsics(R_cw, t_cw).T.ravel().tolist(),
                projectionMatrix=self.P.T.ravel().tolist(),
                renderer=self.render_flag, **look.render_kwargs,
            )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(cfg.height, cfg.width, 4)[:, :, :3]
        depth = depth_buffer_to_metres(np.asarray(buf).reshape(cfg.height, cfg.width), cfg.near, cfg.far)
        depth[depth >= cfg.far * 0.999] = 0.0
        seg = np.asarray(seg).reshape(cfg.height, cfg.width).astype(np.int64)
        seg = np.where(seg >= 0, seg & 0xFFFFFF, -1).astype(np.int32)
        if cfg.noise:
            noisy = rgb.astype(np.float32) * look.gain + rng.normal(0, look.noise_std, rgb.shape)
            rgb = np.clip(noisy, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb), depth, seg

    # -- sequences ----------------------------------------------------------------------------

    def plan_sequence(self, rng: np.random.Generator, frames: int, seq: SequenceConfig) -> _SequencePlan:
        """The cameras, lighting and body motions of a ``frames``-long video of the current scene."""
        times = np.arange(frames) / seq.fps
        look = self.sample_look(rng)
        cameras = camera_trajectory(rng, self.pile_centre(), times, self.cfg, seq)
        candidates = self.pushable()
        n = min(int(rng.integers(seq.pushed[0], seq.pushed[1] + 1)), len(candidates))
        pushed = rng.choice(len(candidates), n, replace=False)
        motions = [self.plan_push(candidates[i], rng, times, seq) for i in pushed]
        if rng.random() < seq.pass_prob:
            with quiet_stdout():  # the EGL plugin prints when a body is added
                motions.append(self.plan_pass(rng, cameras, times, seq))
        return _SequencePlan(cameras, look, motions)

    def pushable(self) -> list[_Placed]:
        """The catalog objects that rest on the table alone and carry nothing, so that a push leaves no
        body hanging in the air: touching the table, and touching other bodies only sideways (contact
        normal within 60 deg of horizontal), after the last physics step."""
        out = []
        for pl in self.placed:
            contacts = self.client.getContactPoints(bodyA=pl.body)  # ct[2]: the other body, ct[7]: normal on it
            on_table = any(ct[2] == self.table_body for ct in contacts)
            if on_table and all(ct[2] == self.table_body or abs(ct[7][2]) <= 0.5 for ct in contacts):
                out.append(pl)
        return out

    def plan_push(self, pl: _Placed, rng: np.random.Generator, times: np.ndarray, seq: SequenceConfig) -> _Motion:
        """A push of the resting object ``pl`` along the table, eased in and out: a straight shift and a
        turn about the vertical through its centre of mass, so that its height and tilt stay those of its
        rest. Of 8 headings the first whose path overlaps other bodies by < 2 mm is taken, else the one
        overlapping least (bodies are not moved out of the way)."""
        pos0, orn0 = (np.asarray(a) for a in self.client.getBasePositionAndOrientation(pl.body))
        duration = rng.uniform(*seq.push_s)
        start = rng.uniform(0.0, max(times[-1] - duration, 0.0))
        length = rng.uniform(*seq.push)
        yaw = np.deg2rad(rng.uniform(-seq.push_turn_deg, seq.push_turn_deg))
        heading = rng.uniform(0, 2 * np.pi)
        best_overlap, best_shift = np.inf, np.zeros(3)
        for k in range(8):
            a = heading + k * np.pi / 4
            shift = length * np.array([np.cos(a), np.sin(a), 0.0])
            overlap = self._push_overlap(pl.body, pos0, orn0, shift, yaw)
            if overlap < best_overlap:
                best_overlap, best_shift = overlap, shift
            if overlap < 0.002:
                break
        self.client.resetBasePositionAndOrientation(pl.body, pos0.tolist(), orn0.tolist())
        s = smoothstep(np.clip((times - start) / duration, 0.0, 1.0))
        return _Motion(pl.body, pos0 + s[:, None] * best_shift, yaw_rotated(orn0, s * yaw))

    def _push_overlap(self, body: int, pos0: np.ndarray, orn0: np.ndarray, shift: np.ndarray, yaw: float) -> float:
        """Deepest overlap (m) of ``body`` with the other bodies along a push (at 4 points), inf when the
        push ends off the table top. Leaves ``body`` moved."""
        if np.any(np.abs((pos0 + shift)[:2]) > np.asarray(TABLE_HALF_SIZE) - TABLE_MARGIN):
            return np.inf
        fractions = np.array([0.25, 0.5, 0.75, 1.0])
        orns = yaw_rotated(orn0, fractions * yaw)
        return max(self._overlap(body, pos0 + f * shift, q) for f, q in zip(fractions, orns))

    def _overlap(self, body: int, pos: np.ndarray, orn: np.ndarray) -> float:
        """Deepest overlap (m) of ``body`` moved to the base pose ``(pos, orn)`` with any body but the table."""
        c = self.client
        c.resetBasePositionAndOrientation(body, pos.tolist(), orn.tolist())
        depth = 0.0
        for other in (c.getBodyUniqueId(i) for i in range(c.getNumBodies())):
            if other not in (body, self.table_body):
                depth = max([depth, *(-pt[8] for pt in c.getClosestPoints(body, other, 0.0))])
        return depth

    def plan_pass(
        self, rng: np.random.Generator, cameras: list[tuple[np.ndarray, np.ndarray]], times: np.ndarray,
        seq: SequenceConfig,
    ) -> _Motion:
        """A new distractor carried straight through the view in front of the pile, an occluder.

        At the camera pose of the middle of the pass it crosses the line from the pile centre to the
        camera, ``pass_fraction`` of the way (at least ``pass_min_height`` above the table), moving
        horizontally across the view from outside it to outside it; before and after, it is parked.
        """
        duration = rng.uniform(*seq.pass_s)
        start = rng.uniform(0.0, max(times[-1] - duration, 0.0))
        R_cw, t_cw = cameras[int(np.clip(round((start + duration / 2) * seq.fps), 0, len(cameras) - 1))]
        eye, axis = -R_cw.T @ t_cw, R_cw[2]
        centre = self.pile_centre()
        crossing = centre + rng.uniform(*seq.pass_fraction) * (eye - centre)
        crossing[2] = max(crossing[2], TABLE_TOP_Z + seq.pass_min_height)
        half = float(axis @ (crossing - eye)) * self.cfg.width / (2 * self.cfg.fx) + 0.15  # half the view + margin
        side = np.cross(axis, [0.0, 0.0, 1.0])
        side *= rng.choice([-1.0, 1.0]) * half / np.linalg.norm(side)
        progress = (times - start) / duration
        inside = ((progress >= 0) & (progress <= 1))[:, None]
        pos = np.where(inside, crossing + (2 * progress[:, None] - 1) * side, PARKED)
        orn = self._random_quat(rng)
        body = self._add_distractor(PARKED.tolist(), orn, rng, self.white_texture_id)
        return _Motion(body, pos, np.tile(orn, (len(times), 1)))

    def apply(self, motions: list[_Motion], i: int) -> None:
        """Move the bodies to their poses of frame ``i`` and update the catalog objects' GT poses."""
        for m in motions:
            self.client.resetBasePositionAndOrientation(m.body, m.pos[i].tolist(), m.orn[i].tolist())
        for pl in self.placed:
            pl.R_wo, pl.t_wo = self.link_pose(pl.body)


# ---------------------------------------------------------------------------------------------
# The generator


def annotate(
    placed: list[_Placed], R_cw: np.ndarray, t_cw: np.ndarray, seg: np.ndarray, K: np.ndarray
) -> tuple[list[GtObject], list[np.ndarray], list[np.ndarray], list[dict]]:
    """Ground truth of one view: poses (object -> camera), visible and full masks, BOP gt_info overrides."""
    h, w = seg.shape
    gts, visib, full, infos = [], [], [], []
    for pl in sorted(placed, key=lambda pl: pl.obj.class_id):
        R, t = compose(R_cw, t_cw, pl.R_wo, pl.t_wo)
        verts = transform_points(pl.obj.mesh.vertices, R, t)
        if np.any(verts[:, 2] <= 0.01):
            continue
        mask_full, bbox_obj = rasterise_silhouette(verts, np.asarray(pl.obj.mesh.faces), K, w, h)
        mask_visib = seg == pl.body
        if not mask_full.any() and not mask_visib.any():
            continue  # outside the image
        gts.append(GtObject(class_id=pl.obj.class_id, R=R, t=t, mask=mask_visib))
        visib.append(mask_visib)
        full.append(mask_full)
        infos.append({"bbox_obj": bbox_obj})
    for g, m in zip(gts, full):
        n_all = int((m | g.mask).sum())
        g.visib_fract = float(g.mask.sum() / n_all) if n_all else 0.0
    return gts, visib, full, infos


def generate(
    catalog: Catalog,
    out: str | Path,
    *,
    split: str = "train",
    scenes: int = 1,
    frames_per_scene: int = 1,
    seed: int = 0,
    cfg: SynthConfig | None = None,
    scene_offset: int = 0,
    progress: bool = True,
    sequence: SequenceConfig | None = None,
) -> dict:
    """Render ``scenes`` x ``frames_per_scene`` frames into the BOP dataset ``out``; returns stats.

    With ``sequence`` each scene is one video of ``frames_per_scene`` frames, else independent views.
    """
    cfg = cfg or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = {"frames": 0, "instances": 0, "total_s": 0.0}
    t_start = time.perf_counter()
    with SceneRenderer(catalog, cfg) as renderer, BopWriter(out, split) as writer:
        log.info("synth: renderer %s, %dx%d, %d scenes x %d frames -> %s/%s",
                 renderer.renderer_name, cfg.width, cfg.height, scenes, frames_per_scene, out, split)
        print(f"synth: using the {renderer.renderer_name} renderer", file=sys.stderr)
        writer.write_models_info(catalog)
        if catalog.source is not None:
            write_catalog_copy(catalog, out / "catalog.yaml")
        if cfg.export_models:
            export_models(catalog, out)
        config_doc = {
            "split": split, "scenes": scenes, "frames_per_scene": frames_per_scene, "seed": seed,
            "scene_offset": scene_offset, "catalog": str(catalog.source) if catalog.source else None,
            "renderer_used": renderer.renderer_name, "K": cfg.K.tolist(), "depth_scale_mm": 1.0,
            "config": dataclasses.asdict(cfg),
        }
        if sequence is not None:
            config_doc.update(sequence=True, fps=sequence.fps, sequence_config=dataclasses.asdict(sequence))
        (out / f"synth_config_{split}.json").write_text(json.dumps(config_doc, indent=2))
        shutil.copyfile(out / f"synth_config_{split}.json", out / "synth_config.json")
        bar = _progress(scenes * frames_per_scene, progress)
        timer = _StageTimer(stats)
        for scene_id in range(scene_offset, scene_offset + scenes):
            rng = np.random.default_rng([seed, scene_id])
            with timer("scene_s"):
                renderer.build_scene(rng)
                plan = renderer.plan_sequence(rng, frames_per_scene, sequence) if sequence is not None else None
            for im_id in range(frames_per_scene):
                R_cw, t_cw, look, camera_extra = _view(renderer, rng, plan, im_id, sequence)
                with timer("render_s"):
                    rgb, depth_m, seg = renderer.render(R_cw, t_cw, rng, look)
                with timer("noise_s"):
                    if cfg.noise:
                        depth_m = realsense_depth_noise(depth_m, cfg.K, rng, cfg)
                    depth_raw = depth_to_mm_uint16(depth_m)
                with timer("annotate_s"):
                    gts, visib, full, infos = annotate(renderer.placed, R_cw, t_cw, seg, cfg.K)
                with timer("write_s"):
                    writer.write_frame(scene_id, im_id, rgb, depth_raw, cfg.K, 1.0, gts, visib, full, gt_infos=infos,
                                       **camera_extra)
                stats["frames"] += 1
                stats["instances"] += len(gts)
                bar.update(1)
        bar.close()
        stats["renderer"] = renderer.renderer_name
    stats["total_s"] = time.perf_counter() - t_start
    stats["fps"] = stats["frames"] / max(stats["total_s"], 1e-9)
    n = max(stats["frames"], 1)
    stats["ms_per_frame"] = {k[:-2]: round(1000 * stats[k] / n, 1) for k in
                             ("scene_s", "render_s", "noise_s", "annotate_s", "write_s") if k in stats}
    return stats


def _view(
    renderer: SceneRenderer, rng: np.random.Generator, plan: _SequencePlan | None, im_id: int,
    sequence: SequenceConfig | None,
) -> tuple[np.ndarray, np.ndarray, _Look | None, dict]:
    """``(R_cw, t_cw, look, BopWriter.write_frame extras)`` of frame ``im_id``: a random view, or the
    video's frame, for which the bodies move to their poses at that time and its pose and stamp are kept."""
    if plan is None:
        return *renderer.sample_camera(rng), None, {}
    R_cw, t_cw = plan.cameras[im_id]
    renderer.apply(plan.motions, im_id)
    return R_cw, t_cw, plan.look, {"world_to_cam": (R_cw, t_cw), "stamp": im_id / sequence.fps}


class _StageTimer:
    """Adds the wall time of ``with timer("name"):`` blocks to ``stats["name"]``."""

    def __init__(self, stats: dict) -> None:
        self.stats = stats

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stats[name] = self.stats.get(name, 0.0) + time.perf_counter() - t0


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("--objects", required=True, help="catalog YAML, e.g. config/objects/demo.yaml")
    parser.add_argument("--out", required=True, help="BOP dataset root to write")
    parser.add_argument("--split", default="train", help="split folder name (default: train)")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes (physics drops)")
    parser.add_argument("--frames-per-scene", type=int, default=10,
                        help="camera views per scene; with --sequence, frames per video")
    parser.add_argument("--sequence", action="store_true",
                        help="each scene is one 30 Hz video: hand-held camera, pushed objects, fixed lighting")
    parser.add_argument("--seed", type=int, default=0, help="scene k uses default_rng([seed, k])")
    parser.add_argument("--scene-offset", type=int, default=0, help="first scene id (to extend a split)")
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--fx", type=float, default=None, help="default: D435 colour 615 at 640 px, scaled with width")
    parser.add_argument("--fy", type=float, default=None, help="default: like fx, scaled with height")
    parser.add_argument("--cx", type=float, default=None, help="default: 320 at 640 px, scaled with width")
    parser.add_argument("--cy", type=float, default=None, help="default: 240 at 480 px, scaled with height")
    parser.add_argument("--renderer", choices=["auto", "egl", "tiny"], default="auto",
                        help="auto: the EGL plugin when it loads, else TinyRenderer")
    parser.add_argument("--no-noise", action="store_true", help="perfect depth (mm-quantised) and clean RGB")
    parser.add_argument("--no-export-models", action="store_true", help="skip models/obj_*.ply")
    parser.add_argument("--overwrite", action="store_true", help="delete OUT/SPLIT first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    sx, sy = args.width / 640.0, args.height / 480.0
    return SynthConfig(
        width=args.width,
        height=args.height,
        fx=args.fx if args.fx is not None else D435_COLOR_640x480["fx"] * sx,
        fy=args.fy if args.fy is not None else D435_COLOR_640x480["fy"] * sy,
        cx=args.cx if args.cx is not None else D435_COLOR_640x480["cx"] * sx,
        cy=args.cy if args.cy is not None else D435_COLOR_640x480["cy"] * sy,
        renderer=args.renderer,
        noise=not args.no_noise,
        export_models=not args.no_export_models,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    catalog = Catalog.load(args.objects)
    out = Path(args.out)
    split_dir = out / args.split
    if split_dir.exists() and any(split_dir.iterdir()) and args.scene_offset == 0:
        if not args.overwrite:
            print(f"synth: {split_dir} is not empty; pass --overwrite or --scene-offset", file=sys.stderr)
            return 2
        shutil.rmtree(split_dir)
    stats = generate(
        catalog, out, split=args.split, scenes=args.scenes, frames_per_scene=args.frames_per_scene,
        seed=args.seed, cfg=config_from_args(args), scene_offset=args.scene_offset, progress=not args.quiet,
        sequence=SequenceConfig() if args.sequence else None,
    )
    print(
        f"synth: {stats['frames']} frames, {stats['instances']} instances in {stats['total_s']:.1f} s "
        f"({stats['fps']:.2f} frames/s, {stats['renderer']} renderer; ms/frame {stats['ms_per_frame']}) -> {split_dir}",
        file=sys.stderr,
    )
    return 0
