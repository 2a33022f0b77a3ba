"""Test helpers shared by several test modules (import as ``from helpers import ...``); random-weight networks are
:mod:`tools.random_networks`'s."""

from __future__ import annotations

from pathlib import Path


def chair_object(directory: Path, class_id: int = 1, name: str = "chair"):
    """A shape with no rotational symmetry (three boxes of different sizes, 12 cm across) as a
    catalog :class:`~densefusion_ros.catalog.ObjectInfo` whose mesh is written to ``directory``."""
    import numpy as np
    import trimesh

    from densefusion_ros.catalog import ObjectInfo

    parts = [
        trimesh.creation.box(extents=(0.12, 0.03, 0.03)),
        trimesh.creation.box(extents=(0.03, 0.07, 0.03), transform=trimesh.transformations.translation_matrix((0.045, 0.05, 0))),
        trimesh.creation.box(extents=(0.03, 0.03, 0.05), transform=trimesh.transformations.translation_matrix((-0.045, 0, 0.04))),
    ]
    path = Path(directory) / f"{name}.obj"
    trimesh.util.concatenate(parts).export(path)
    return ObjectInfo(name=name, class_id=class_id, index=class_id - 1, mesh_path=path, scale=np.ones(3))


def render_depth(surface, R, t, K, shape=(240, 320), wall: float = 0.8, depth=None):
    """Depth of a posed dense surface sample ``(N, 3)`` (a point-splat z-buffer) in front of a wall
    at ``wall`` metres (or drawn into ``depth``), and the pixels it covers: ``(depth (H, W), mask (H, W))``."""
    import numpy as np

    cam = surface @ R.T + t
    u = np.round(K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]).astype(int)
    keep = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    out = np.full(shape, wall) if depth is None else depth.copy()
    before = out.copy()
    np.minimum.at(out, (v[keep], u[keep]), cam[keep, 2])
    return out, out < before - 1e-6
