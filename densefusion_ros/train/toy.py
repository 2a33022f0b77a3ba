"""A tiny synthetic BOP dataset for smoke tests of training and evaluation (no pybullet).

Two objects: ``lblock`` (an L-shaped block, not symmetric) and ``can`` (a cylinder, symmetric
about its z axis), rendered by splatting dense surface samples into a z-buffer in front of a
textured plane at 0.9 m. Colours depend on object-frame coordinates (for the can only on the
height, so that its appearance shares its symmetry). Good enough to exercise every code path in
seconds; not a substitute for the pybullet generator (``densefusion-ros synth``).

Layout: ``ROOT/catalog.yaml``, ``ROOT/meshes/*.ply`` (metres), ``ROOT/models/models_info.json``
and ``ROOT/{split}/000000/...`` written with :class:`densefusion_ros.data.bop.BopWriter`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from densefusion_ros.catalog import Catalog
from densefusion_ros.frame import GtObject
from densefusion_ros.geometry import project, transform_points

__all__ = ["make_toy_dataset", "TOY_K"]

TOY_K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def _meshes():
    import trimesh

    a = trimesh.creation.box(extents=(0.08, 0.03, 0.03))
    b = trimesh.creation.box(extents=(0.03, 0.05, 0.03))
    b.apply_translation((0.025, 0.04, 0.0))
    lblock = trimesh.util.concatenate([a, b])
    lblock.apply_translation(-lblock.bounds.mean(axis=0))
    can = trimesh.creation.cylinder(radius=0.03, height=0.07, sections=48)
    return {"lblock": lblock, "can": can}


def _colours(name: str, pts: np.ndarray, base: np.ndarray) -> np.ndarray:
    if name == "can":
        stripe = (np.sin(pts[:, 2] * 180.0) > 0).astype(np.float64)[:, None]
        col = base * (0.55 + 0.45 * stripe)
    else:
        col = base * 0.5 + 0.5 * 255 * np.clip((pts / 0.08) + 0.5, 0, 1)
    return np.clip(col, 0, 255)


def make_toy_dataset(
    root: str | Path,
    *,
    splits: dict[str, int] | None = None,
    objects_per_frame: tuple[int, int] = (1, 2),
    seed: int = 0,
    samples_per_object: int = 12000,
    image_size: tuple[int, int] = (240, 320),
) -> Path:
    """Write the toy dataset; returns ``ROOT``.

    Args:
        root: output folder.
        splits: ``{split: number of frames}`` (default ``{"train": 8, "test": 4}``).
        objects_per_frame: inclusive range of objects per frame (at most one of each).
        seed: random seed (poses, textures).
        samples_per_object: surface samples splatted per object (density of the rendering).
        image_size: ``(H, W)``; the intrinsics are :data:`TOY_K` (centred for 320x240).
    """
    import trimesh

    from densefusion_ros.data.bop import BopWriter

    root = Path(root)
    splits = splits or {"train": 8, "test": 4}
    meshes = _meshes()
    (root / "meshes").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (name, mesh) in enumerate(meshes.items()):
        path = root / "meshes" / f"{name}.ply"
        mesh.export(path)
        entries.append({"name": name, "class_id": i + 1, "index": i, "mesh": f"meshes/{name}.ply", "scale": 1.0,
                        "symmetric": name == "can"})  # fmt: skip
    src = root / "toy_catalog.yaml"
    src.write_text(yaml.safe_dump({"objects": entries}, sort_keys=False))
    catalog = Catalog.load(src)
    rng = np.random.default_rng(seed)
    bases = {"lblock": np.array([220.0, 80.0, 40.0]), "can": np.array([40.0, 120.0, 220.0])}
    samples = {}
    for name, mesh in meshes.items():
        pts, _ = trimesh.sample.sample_surface(mesh, samples_per_object, seed=seed)
        samples[name] = (np.asarray(pts), _colours(name, np.asarray(pts), bases[name]))
    H, W = image_size
    K = TOY_K.copy()
    K[0, 2], K[1, 2] = W / 2.0, H / 2.0
    for split, n_frames in splits.items():
        with BopWriter(root, split) as writer:
            for im_id in range(n_frames):
                rgb, depth, gts, visib, full = _render_frame(catalog, samples, K, (H, W), rng, objects_per_frame)
                depth_raw = np.round(depth * 1000.0).astype(np.uint16)
                writer.write_frame(0, im_id, rgb, depth_raw, K, 1.0, gts, visib, full)
        writer.write_models_info(catalog)
    BopWriter(root).write_catalog(catalog)
    return root


def _render_frame(catalog, samples, K, shape, rng, objects_per_frame):
    from scipy.spatial.transform import Rotation

    H, W = shape
    # textured background plane at 0.9 m
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([120 + 40 * np.sin(xx / 9.0), 110 + 40 * np.cos(yy / 7.0), 100 + 30 * np.sin((xx + yy) / 13.0)], -1)
    rgb = bg + rng.normal(0, 6, (H, W, 3))
    depth = np.full((H, W), 0.9)
    owner = np.full((H, W), -1)
    lo, hi = objects_per_frame
    chosen = rng.choice(len(catalog.objects), size=int(rng.integers(lo, hi + 1)), replace=False)
    gts, fulls = [], []
    placed: list[np.ndarray] = []
    for k, oi in enumerate(chosen):
        obj = catalog.objects[int(oi)]
        pts, col = samples[obj.name]
        R = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()
        for _ in range(20):  # keep objects apart in the image
            t = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.05, 0.05), rng.uniform(0.45, 0.65)])
            if all(np.linalg.norm(t[:2] - p[:2]) > 0.07 for p in placed):
                break
        placed.append(t)
        cam = transform_points(pts, R, t)
        u, v = np.round(project(cam, K)).astype(int).T
        full = np.zeros((H, W), bool)
        for du in (0, 1):
            for dv in (0, 1):
                uu, vv = u + du, v + dv
                ok = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
                lin = vv[ok] * W + uu[ok]
                z = cam[ok, 2]
                flat_d = depth.reshape(-1)
                order = np.argsort(-z)  # far first: nearer points overwrite
                lin, z, c = lin[order], z[order], col[ok][order]
                closer = z < flat_d[lin]
                lin, z, c = lin[closer], z[closer], c[closer]
                flat_d[lin] = z
                owner.reshape(-1)[lin] = k
                rgb.reshape(-1, 3)[lin] = c
                full.reshape(-1)[lin] = True
        gts.append(GtObject(class_id=obj.class_id, R=R, t=t))
        fulls.append(full)
    visib = [owner == k for k in range(len(gts))]
    rgb = np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)
    return rgb, depth, gts, visib, [f | v for f, v in zip(fulls, visib)]
