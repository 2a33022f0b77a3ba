"""Linemod_preprocessed (the DenseFusion download, SIXD-2017-style YAML).

Layout::

    ROOT/data/{obj:02d}/rgb/{NNNN}.png, depth/{NNNN}.png (uint16 mm), mask/{NNNN}.png (white = object)
    ROOT/data/{obj:02d}/gt.yml     {frame: [{cam_R_m2c: 9 row-major, cam_t_m2c: mm, obj_bb: [x,y,w,h], obj_id}]}
    ROOT/data/{obj:02d}/info.yml   {frame: {cam_K: 9, depth_scale}}  (DenseFusion ignores it)
    ROOT/data/{obj:02d}/train.txt, test.txt   frame numbers
    ROOT/models/obj_{obj:02d}.ply (mm), models/models_info.yml {id: {diameter, min_x.., size_x..}} (mm)

Folder 02 holds several objects per frame: as in DenseFusion, the entry with ``obj_id == 2`` is
used (elsewhere the entry of the folder's object, else the first). Poses and depth come out in
metres; ``K`` is ``info.yml``'s ``cam_K`` when present, else DenseFusion's hard-coded LineMOD K.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from densefusion_ros.data import io
from densefusion_ros.data.bop import gt_pose
from densefusion_ros.frame import Frame, GtObject, depth_to_metres

#: DenseFusion's hard-coded LineMOD camera (fact sheet 4.4).
K_LINEMOD = np.array([[572.41140, 0.0, 325.26110], [0.0, 573.57043, 242.04899], [0.0, 0.0, 1.0]])

def _load_yaml(path: Path) -> dict:
    # CSafeLoader when built: gt.yml of a LineMOD object is ~1 MB and the pure-Python loader is slow.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path) as f:
        return yaml.load(f, Loader=loader) or {}


class LinemodDataset:
    """Linemod_preprocessed frames with the ground truth of each folder's object.

    Args:
        root: the ``Linemod_preprocessed`` folder.
        objects: object ids to include (default: every ``data/NN`` folder present).
        split: ``"train"`` or ``"test"`` (the folder's ``train.txt`` / ``test.txt``) or ``"all"``
            (every ``rgb/`` image).

    Attributes:
        index: ``[(obj_id, frame_id), ...]``.
    """

    def __init__(self, root: str | Path, objects: list[int] | None = None, split: str = "train") -> None:
        self.root = Path(root)
        self.split = split
        if objects is None:
            objects = sorted(int(p.name) for p in (self.root / "data").iterdir() if p.is_dir() and p.name.isdigit())
        self.objects = list(objects)
        self.index: list[tuple[int, int]] = []
        for obj in self.objects:
            folder = self.obj_dir(obj)
            if split == "all":
                frames = sorted(int(p.stem) for p in (folder / "rgb").glob("*.png"))
            else:
                lines = (folder / f"{split}.txt").read_text().split()
                frames = [int(x) for x in lines if x.strip()]
            self.index.extend((obj, f) for f in frames)

    def obj_dir(self, obj_id: int) -> Path:
        return self.root / "data" / f"{obj_id:02d}"

    @functools.lru_cache(maxsize=16)
    def gt(self, obj_id: int) -> dict[int, list[dict]]:
        return {int(k): v for k, v in _load_yaml(self.obj_dir(obj_id) / "gt.yml").items()}

    @functools.lru_cache(maxsize=16)
    def info(self, obj_id: int) -> dict[int, dict]:
        path = self.obj_dir(obj_id) / "info.yml"
        return {int(k): v for k, v in _load_yaml(path).items()} if path.is_file() else {}

    @functools.cached_property
    def models_info(self) -> dict[int, dict]:
        """``models/models_info.yml`` keyed by object id (mm, as stored)."""
        path = self.root / "models" / "models_info.yml"
        return {int(k): v for k, v in _load_yaml(path).items()} if path.is_file() else {}

    def model_path(self, obj_id: int) -> Path:
        return self.root / "models" / f"obj_{obj_id:02d}.ply"

    @functools.lru_cache(maxsize=16)
    def model_points(self, obj_id: int) -> np.ndarray:
        """The model's vertices ``(N, 3)`` float32 in metres (the ply is in mm)."""
        import trimesh

        mesh = trimesh.load(self.model_path(obj_id), process=False)
        points = (np.asarray(mesh.vertices, dtype=np.float64) / 1000.0).astype(np.float32)
        points.setflags(write=False)
        return points

    def camera(self, obj_id: int, frame_id: int) -> np.ndarray:
        entry = self.info(obj_id).get(frame_id)
        if entry and "cam_K" in entry:
            return np.asarray(entry["cam_K"], dtype=np.float64).reshape(3, 3)
        return K_LINEMOD.copy()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Frame:
        return self.load_frame(*self.index[i])

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def gt_entry(self, obj_id: int, frame_id: int) -> dict:
        """The gt.yml entry of the folder's object in one frame (the folder 02 rule)."""
        entries = self.gt(obj_id)[frame_id]
        return next((e for e in entries if int(e["obj_id"]) == obj_id), entries[0])

    def load_frame(self, obj_id: int, frame_id: int) -> Frame:
        folder = self.obj_dir(obj_id)
        name = f"{frame_id:04d}.png"
        rgb = io.read_rgb(folder / "rgb" / name)
        depth_scale_mm = float((self.info(obj_id).get(frame_id) or {}).get("depth_scale", 1.0))
        depth_m = depth_to_metres(io.read_raw(folder / "depth" / name), depth_scale_mm / 1000.0)
        mask_path = folder / "mask" / name
        mask = io.read_mask(mask_path) if mask_path.is_file() else None
        entry = self.gt_entry(obj_id, frame_id)
        R, t = gt_pose(entry)
        gt = GtObject(class_id=int(entry["obj_id"]), R=R, t=t, mask=mask)
        return Frame(rgb=rgb, depth_m=depth_m, K=self.camera(obj_id, frame_id), gt=[gt])
