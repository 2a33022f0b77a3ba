"""The object catalog: names, ids, meshes, symmetry and diameters, from one YAML file.

Example ``config/objects/demo.yaml``::

    objects:
      - name: duck
        class_id: 1            # label value in masks and BOP obj_id (0 is background)
        index: 0               # the network's object index (default: position in the list)
        mesh: pybullet_data://duck.obj   # or a path relative to this YAML file; ${VAR} is expanded
        scale: 0.001           # mesh units -> metres, scalar or [sx, sy, sz]
        symmetric: false       # ADD-S instead of ADD in losses and metrics
        diameter: 0.12         # metres; computed from the mesh when absent

Units: everything the catalog returns is in metres, in the object frame of the scaled mesh.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import yaml

if TYPE_CHECKING:
    import trimesh

PYBULLET_DATA = "pybullet_data://"


def resolve_mesh_path(mesh: str, base_dir: Path) -> Path:
    """A mesh path: ``pybullet_data://x`` is looked up in the installed pybullet_data package;
    ``${VAR}`` and ``~`` are expanded (``${YCB_VIDEO_MODELS}/025_mug/textured.obj``: where the
    user keeps a dataset's models); a relative path is relative to the catalog's folder.

    Raises:
        ValueError: the path names an environment variable that is not set.
    """
    if mesh.startswith(PYBULLET_DATA):
        import pybullet_data

        return Path(pybullet_data.getDataPath()) / mesh[len(PYBULLET_DATA):]
    expanded = os.path.expandvars(mesh)
    if "$" in expanded:
        missing = re.findall(r"\$\{?(\w+)", expanded)
        raise ValueError(f"mesh {mesh!r}: set the environment variable {missing[0]} (the folder of these meshes)")
    path = Path(expanded).expanduser()
    return path if path.is_absolute() else (base_dir / path)


@dataclass
class ObjectInfo:
    """One known object. Arrays are in metres, in the object frame."""

    name: str
    class_id: int
    index: int
    mesh_path: Path
    scale: np.ndarray
    symmetric: bool = False
    diameter_m: float | None = None
    color: tuple[float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _points_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @functools.cached_property
    def mesh(self) -> trimesh.Trimesh:
        """The scaled ``trimesh.Trimesh`` (metres)."""
        import trimesh

        loaded = trimesh.load(self.mesh_path, force="mesh", process=False)
        loaded.vertices = np.asarray(loaded.vertices, dtype=np.float64) * self.scale
        return loaded

    @functools.cached_property
    def vertices(self) -> np.ndarray:
        """Mesh vertices ``(V, 3)`` float32 in metres."""
        return np.asarray(self.mesh.vertices, dtype=np.float32)

    @property
    def diameter(self) -> float:
        """The largest distance between two mesh vertices, in metres (from the YAML when given)."""
        if self.diameter_m is None:
            self.diameter_m = mesh_diameter(self.vertices)
        return self.diameter_m

    @functools.cached_property
    def extents(self) -> np.ndarray:
        """Axis-aligned bounding-box size ``(3,)`` in metres."""
        v = self.vertices
        return (v.max(axis=0) - v.min(axis=0)).astype(np.float32)

    @functools.cached_property
    def bbox_center(self) -> np.ndarray:
        """Centre ``(3,)`` of the axis-aligned bounding box in the object frame, metres."""
        v = self.vertices
        return ((v.max(axis=0) + v.min(axis=0)) / 2).astype(np.float32)

    def sample_points(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` points ``(count, 3)`` float32 spread evenly over the surface, repeatable by seed."""
        key = (count, seed)
        if key not in self._points_cache:
            import trimesh

            points, _ = trimesh.sample.sample_surface_even(self.mesh, count, seed=seed)
            if len(points) < count:  # even sampling may return fewer; top up uniformly
                extra, _ = trimesh.sample.sample_surface(self.mesh, count - len(points), seed=seed)
                points = np.concatenate([points, extra])
            points = np.asarray(points, dtype=np.float32)
            points.setflags(write=False)
            self._points_cache[key] = points
        return self._points_cache[key]


def mesh_diameter(vertices: np.ndarray, max_points: int = 4000) -> float:
    """The largest pairwise distance, exact over the convex hull when scipy can build one."""
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    pts = np.asarray(vertices, dtype=np.float64)
    try:
        pts = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        pass
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
    return float(pdist(pts).max()) if len(pts) > 1 else 0.0


class Catalog:
    """An ordered set of :class:`ObjectInfo`, looked up by name, class id or network index."""

    def __init__(self, objects: list[ObjectInfo], source: Path | None = None) -> None:
        self.objects = list(objects)
        self.source = source
        for key in ("name", "class_id", "index"):
            values = [getattr(o, key) for o in self.objects]
            if len(set(values)) != len(values):
                raise ValueError(f"catalog {source}: duplicate {key} in {values}")
        self._by_name = {o.name: o for o in self.objects}
        self._by_class = {o.class_id: o for o in self.objects}
        self._by_index = {o.index: o for o in self.objects}

    @classmethod
    def load(cls, path: str | Path) -> "Catalog":
        """Read a catalog YAML (see the module docstring)."""
        path = Path(path)
        data = yaml.safe_load(path.read_text()) or {}
        entries = data.get("objects", [])
        if not entries:
            raise ValueError(f"catalog {path}: no 'objects'")
        objects = []
        known = {"name", "class_id", "index", "mesh", "scale", "symmetric", "diameter", "color"}
        for i, e in enumerate(entries):
            scale = np.broadcast_to(np.asarray(e.get("scale", 1.0), dtype=np.float64), (3,)).copy()
            objects.append(
                ObjectInfo(
                    name=str(e["name"]),
                    class_id=int(e.get("class_id", i + 1)),
                    index=int(e.get("index", i)),
                    mesh_path=resolve_mesh_path(str(e["mesh"]), path.parent),
                    scale=scale,
                    symmetric=bool(e.get("symmetric", False)),
                    diameter_m=float(e["diameter"]) if e.get("diameter") is not None else None,
                    color=tuple(e["color"]) if e.get("color") is not None else None,
                    extra={k: v for k, v in e.items() if k not in known},
                )
            )
        return cls(objects, path)

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self) -> Iterator[ObjectInfo]:
        return iter(self.objects)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    @property
    def num_objects(self) -> int:
        """The number of network object slots (max index + 1)."""
        return max(o.index for o in self.objects) + 1

    def by_name(self, name: str) -> ObjectInfo:
        return self._by_name[name]

    def by_class_id(self, class_id: int) -> ObjectInfo | None:
        return self._by_class.get(int(class_id))

    def by_index(self, index: int) -> ObjectInfo:
        return self._by_index[int(index)]
