"""BOP datasets: a reader that yields :class:`Frame` objects and a writer used by the generator.

Layout (https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md)::

    ROOT/models/models_info.json          {obj_id: {diameter, min_x.., size_x.., symmetries_*}}, mm
    ROOT/models/obj_{obj_id:06d}.ply      optional meshes, mm
    ROOT/{split}/{scene_id:06d}/scene_camera.json   {im_id: {cam_K: 9, depth_scale: mm per raw unit}}, optional
                                                    cam_R_w2c: 9, cam_t_w2c: mm, stamp: s (not BOP; synth sequences)
    ROOT/{split}/{scene_id:06d}/scene_gt.json       {im_id: [{cam_R_m2c: 9 row-major, cam_t_m2c: mm, obj_id}]}
    ROOT/{split}/{scene_id:06d}/scene_gt_info.json  {im_id: [{bbox_obj, bbox_visib, px_count_*, visib_fract}]}
    ROOT/{split}/{scene_id:06d}/rgb/{im_id:06d}.png (or .jpg), depth/{im_id:06d}.png (uint16)
    ROOT/{split}/{scene_id:06d}/mask_visib/{im_id:06d}_{gt_idx:06d}.png, optional mask/ (full silhouette)

Units at this boundary: files hold millimetres; :class:`BopDataset` returns metres
(``t_m = cam_t_m2c / 1000``, depth via ``depth_scale / 1000`` metres per unit) and
:class:`BopWriter` takes metres and writes millimetres. Boxes are ``[x, y, w, h]`` in pixels.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import yaml

from densefusion_ros.catalog import PYBULLET_DATA, Catalog
from densefusion_ros.data import io
from densefusion_ros.frame import Frame, GtObject, depth_to_metres
from densefusion_ros.sampling import mask_box

SCENE_DIR = "{split}/{scene_id:06d}"
RGB_NAME = "rgb/{im_id:06d}.{ext}"
DEPTH_NAME = "depth/{im_id:06d}.png"
MASK_VISIB_NAME = "mask_visib/{im_id:06d}_{gt_idx:06d}.png"
MASK_NAME = "mask/{im_id:06d}_{gt_idx:06d}.png"
MODEL_NAME = "models/obj_{obj_id:06d}.ply"


# ---------------------------------------------------------------------------------------------
# Reader


def evenly_spaced(n: int, at_most: int | None) -> list[int]:
    """Indices into ``range(n)`` that thin it evenly to at most ``at_most`` items, first and last kept.

    ``np.linspace(0, n - 1, at_most)`` rounded, without repeats; all of ``range(n)`` when
    ``at_most`` is ``None`` or not below ``n``. The one rule for ``--max-frames``-style options.
    """
    if at_most is None or n <= at_most:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, at_most).round().astype(int)).tolist()


def gt_pose(entry: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """``(R (3, 3), t (3,) metres)`` float64 of one ``scene_gt`` entry (object -> OpenCV camera)."""
    R = np.asarray(entry["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
    return R, np.asarray(entry["cam_t_m2c"], dtype=np.float64).reshape(3) / 1000.0


def paint_labels(shape: tuple[int, int], layers: Iterable[tuple[float, np.ndarray, int]], dtype=np.uint16) -> np.ndarray:
    """A label image ``shape`` of ``dtype``: each ``(depth, mask, value)`` painted far to near, so
    that a nearer instance wins where masks touch; 0 elsewhere. Depth in any one unit."""
    label = np.zeros(shape, dtype)
    for _, mask, value in sorted(layers, key=lambda layer: -layer[0]):
        label[mask] = value
    return label


class BopDataset:
    """One split of a BOP dataset, frame by frame.

    Args:
        root: the dataset folder (holding ``models/`` and ``{split}/``).
        split: the split folder name, e.g. ``train``, ``test``, ``train_pbr``.
        scene_ids: restrict to these scenes (default: every numbered folder in the split).
        load_masks: read ``mask_visib`` into :attr:`GtObject.mask` (missing files give None).
        with_label: also fill :attr:`Frame.label` from the visible masks (obj_id per pixel). Off by
            default, since a label image makes the pipeline skip its own segmentation.

    Attributes:
        index: ``[(scene_id, im_id), ...]`` in scene then image order.
        models_info: ``{obj_id: info}`` from ``models/models_info.json`` (mm, as stored), or ``{}``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        scene_ids: list[int] | None = None,
        load_masks: bool = True,
        with_label: bool = False,
    ):
        self.root = Path(root)
        self.split = split
        self.load_masks = load_masks
        self.with_label = with_label
        split_dir = self.root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"BOP split folder not found: {split_dir}")
        if scene_ids is None:
            scene_ids = sorted(int(p.name) for p in split_dir.iterdir() if p.is_dir() and p.name.isdigit())
        self.scene_ids = list(scene_ids)
        self.index: list[tuple[int, int]] = []
        for scene_id in self.scene_ids:
            ids = self.scene_camera(scene_id).keys() or self.scene_gt(scene_id).keys()
            self.index.extend((scene_id, im_id) for im_id in sorted(ids))

    # -- metadata ---------------------------------------------------------------------------

    @functools.cached_property
    def models_info(self) -> dict[int, dict]:
        path = self.root / "models" / "models_info.json"
        return io.load_json(path, keys_to_int=True) if path.is_file() else {}

    def scene_dir(self, scene_id: int) -> Path:
        return self.root / SCENE_DIR.format(split=self.split, scene_id=scene_id)

    @functools.lru_cache(maxsize=64)
    def _scene_json(self, scene_id: int, name: str) -> dict[int, object]:
        path = self.scene_dir(scene_id) / name
        return io.load_json(path, keys_to_int=True) if path.is_file() else {}

    def scene_camera(self, scene_id: int) -> dict[int, dict]:
        return self._scene_json(scene_id, "scene_camera.json")

    def scene_gt(self, scene_id: int) -> dict[int, list[dict]]:
        return self._scene_json(scene_id, "scene_gt.json")

    def scene_gt_info(self, scene_id: int) -> dict[int, list[dict]]:
        return self._scene_json(scene_id, "scene_gt_info.json")

    def gt_info(self, scene_id: int, im_id: int) -> list[dict]:
        """The ``scene_gt_info`` entries of one image (empty list when the file is absent)."""
        return list(self.scene_gt_info(scene_id).get(im_id, []))

    def model_path(self, obj_id: int) -> Path:
        return self.root / MODEL_NAME.format(obj_id=obj_id)

    def camera(self, scene_id: int, im_id: int) -> tuple[np.ndarray, float]:
        """``(K (3, 3) float64, depth_scale in metres per raw unit)`` of one image."""
        cam = self.scene_camera(scene_id)[im_id]
        K = np.asarray(cam["cam_K"], dtype=np.float64).reshape(3, 3)
        return K, float(cam.get("depth_scale", 1.0)) / 1000.0

    def world_to_camera(self, scene_id: int, im_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(R (3, 3), t (3,) metres)`` float64, world -> OpenCV camera, of one image of a moving
        camera's sequence (``cam_R_w2c``, ``cam_t_w2c``), or None where the dataset has none."""
        cam = self.scene_camera(scene_id).get(im_id, {})
        if "cam_R_w2c" not in cam or "cam_t_w2c" not in cam:
            return None
        return gt_pose({"cam_R_m2c": cam["cam_R_w2c"], "cam_t_m2c": cam["cam_t_w2c"]})

    # -- frames -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Frame:
        scene_id, im_id = self.index[i]
        return self.load_frame(scene_id, im_id)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def rgb_path(self, scene_id: int, im_id: int) -> Path:
        scene = self.scene_dir(scene_id)
        for ext in ("png", "jpg", "tif"):
            path = scene / RGB_NAME.format(im_id=im_id, ext=ext)
            if path.is_file():
                return path
        gray = scene / f"gray/{im_id:06d}.tif"  # ITODD
        if gray.is_file():
            return gray
        raise FileNotFoundError(f"no rgb image for scene {scene_id} image {im_id} in {scene}")

    def read_image(self, scene_id: int, im_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rgb (H, W, 3) uint8, depth (H, W) float32 metres, K (3, 3))`` of one image; depth is
        zeros when the image has no depth file."""
        K, depth_scale_m = self.camera(scene_id, im_id)
        rgb = io.read_rgb(self.rgb_path(scene_id, im_id))
        depth_path = self.scene_dir(scene_id) / DEPTH_NAME.format(im_id=im_id)
        if depth_path.is_file():
            depth_m = depth_to_metres(io.read_raw(depth_path), depth_scale_m)
        else:
            depth_m = np.zeros(rgb.shape[:2], np.float32)
        return rgb, depth_m, K

    def mask_path(self, scene_id: int, im_id: int, gt_idx: int) -> Path:
        """The ``mask_visib`` file of instance ``gt_idx`` of one image."""
        return self.scene_dir(scene_id) / MASK_VISIB_NAME.format(im_id=im_id, gt_idx=gt_idx)

    def read_mask(self, scene_id: int, im_id: int, gt_idx: int) -> np.ndarray | None:
        """The visible mask ``(H, W)`` bool of instance ``gt_idx`` of one image, ``None`` without its file."""
        path = self.mask_path(scene_id, im_id, gt_idx)
        return io.read_mask(path) if path.is_file() else None

    def load_frame(self, scene_id: int, im_id: int) -> Frame:
        """The frame with ``gt`` poses in metres (object -> OpenCV camera) and visible masks."""
        rgb, depth_m, K = self.read_image(scene_id, im_id)
        infos = self.gt_info(scene_id, im_id)
        gt = []
        for gt_idx, entry in enumerate(self.scene_gt(scene_id).get(im_id, [])):
            R, t = gt_pose(entry)
            mask = self.read_mask(scene_id, im_id, gt_idx) if self.load_masks else None
            visib = float(infos[gt_idx]["visib_fract"]) if gt_idx < len(infos) else 1.0
            gt.append(GtObject(class_id=int(entry["obj_id"]), R=R, t=t, mask=mask, visib_fract=visib))
        label = None
        if self.with_label:
            label = paint_labels(rgb.shape[:2], [(g.t[2], g.mask, g.class_id) for g in gt if g.mask is not None])
        stamp = float(self.scene_camera(scene_id)[im_id].get("stamp", 0.0))
        return Frame(rgb=rgb, depth_m=depth_m, K=K, label=label, gt=gt, stamp=stamp)


# ---------------------------------------------------------------------------------------------
# Writer


def mask_bbox(mask: np.ndarray) -> list[int]:
    """BOP ``[x, y, w, h]`` of a boolean mask, ``[-1, -1, -1, -1]`` when empty."""
    box = mask_box(mask)
    if box is None:
        return [-1, -1, -1, -1]
    rmin, rmax, cmin, cmax = box
    return [cmin, rmin, cmax - cmin, rmax - rmin]


class BopWriter:
    """Writes frames into ``ROOT/{split}/{scene_id:06d}/`` and the per-scene JSON files.

    The JSON of a scene is written when the writer moves on to another scene and on
    :meth:`close` (also via ``with BopWriter(...) as w:``), so finished scenes are complete on disk
    even if a long run stops early. Poses are given in metres and stored in mm.
    """

    def __init__(self, root: str | Path, split: str = "train", *, rgb_ext: str = "png"):
        self.root = Path(root)
        self.split = split
        self.rgb_ext = rgb_ext
        self._scene_id: int | None = None
        self._camera: dict[int, dict] = {}
        self._gt: dict[int, list[dict]] = {}
        self._gt_info: dict[int, list[dict]] = {}

    def __enter__(self) -> "BopWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scene_dir(self, scene_id: int) -> Path:
        return self.root / SCENE_DIR.format(split=self.split, scene_id=scene_id)

    def write_frame(
        self,
        scene_id: int,
        im_id: int,
        rgb: np.ndarray,
        depth_raw: np.ndarray,
        K: np.ndarray,
        depth_scale_mm: float,
        gt_list: list[GtObject],
        masks_visib: list[np.ndarray],
        masks_full: list[np.ndarray] | None = None,
        *,
        gt_infos: list[dict] | None = None,
        world_to_cam: tuple[np.ndarray, np.ndarray] | None = None,
        stamp: float | None = None,
    ) -> None:
        """Write one image and record its camera and ground truth.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB.
            depth_raw: ``(H, W)`` uint16; metres = raw * depth_scale_mm / 1000.
            K: ``(3, 3)`` intrinsics.
            depth_scale_mm: millimetres per raw depth unit (1.0 for mm PNGs).
            gt_list: instances with ``R`` and ``t`` in metres (object -> OpenCV camera).
            masks_visib: one visible mask per instance, same order.
            masks_full: optional full silhouettes (in the image), written to ``mask/``.
            gt_infos: optional per-instance overrides of the computed ``scene_gt_info`` fields,
                e.g. ``bbox_obj`` for a silhouette that leaves the image.
            world_to_cam: optional ``(R, t)`` world -> OpenCV camera (metres), stored as BOP's
                ``cam_R_w2c`` / ``cam_t_w2c`` (mm), e.g. the moving camera of a video.
            stamp: optional capture time in seconds, stored as ``stamp`` (not a BOP field; read
                back into :attr:`Frame.stamp`).

        ``scene_gt_info`` follows bop_toolkit's ``calc_gt_info``: ``px_count_all`` = silhouette
        pixels inside the image, ``px_count_valid`` = those with depth > 0, ``px_count_visib`` =
        visible pixels, ``visib_fract = visib / all``. Without full masks the silhouette is taken
        as the visible mask (``visib_fract`` = 1).
        """
        if len(masks_visib) != len(gt_list) or (masks_full is not None and len(masks_full) != len(gt_list)):
            raise ValueError("need one mask per ground-truth instance")
        depth_raw = np.asarray(depth_raw)
        if depth_raw.dtype != np.uint16:
            raise ValueError(f"depth_raw must be uint16, got {depth_raw.dtype}")
        if self._scene_id is not None and scene_id != self._scene_id:
            self.flush()
        self._scene_id = scene_id
        scene = self.scene_dir(scene_id)
        io.write_rgb(scene / RGB_NAME.format(im_id=im_id, ext=self.rgb_ext), rgb)
        io.write_raw(scene / DEPTH_NAME.format(im_id=im_id), depth_raw)

        self._camera[im_id] = {
            "cam_K": np.asarray(K, dtype=np.float64).reshape(9).tolist(),
            "depth_scale": float(depth_scale_mm),
        }
        if world_to_cam is not None:
            R_cw, t_cw = (np.asarray(a, dtype=np.float64) for a in world_to_cam)
            self._camera[im_id]["cam_R_w2c"] = R_cw.reshape(9).tolist()
            self._camera[im_id]["cam_t_w2c"] = (t_cw.reshape(3) * 1000.0).tolist()
        if stamp is not None:
            self._camera[im_id]["stamp"] = float(stamp)
        gts, infos = [], []
        valid = depth_raw > 0
        for gt_idx, g in enumerate(gt_list):
            visib = np.asarray(masks_visib[gt_idx], dtype=bool)
            full = np.asarray(masks_full[gt_idx], dtype=bool) | visib if masks_full is not None else visib
            io.write_mask(scene / MASK_VISIB_NAME.format(im_id=im_id, gt_idx=gt_idx), visib)
            if masks_full is not None:
                io.write_mask(scene / MASK_NAME.format(im_id=im_id, gt_idx=gt_idx), full)
            gts.append(
                {
                    "cam_R_m2c": np.asarray(g.R, dtype=np.float64).reshape(9).tolist(),
                    "cam_t_m2c": (np.asarray(g.t, dtype=np.float64).reshape(3) * 1000.0).tolist(),
                    "obj_id": int(g.class_id),
                }
            )
            n_all, n_visib = int(full.sum()), int(visib.sum())
            info = {
                "bbox_obj": mask_bbox(full),
                "bbox_visib": mask_bbox(visib),
                "px_count_all": n_all,
                "px_count_valid": int((full & valid).sum()),
                "px_count_visib": n_visib,
                "visib_fract": float(n_visib / n_all) if n_all > 0 else 0.0,
            }
            if gt_infos is not None and gt_infos[gt_idx]:
                info.update(gt_infos[gt_idx])
            infos.append(info)
        self._gt[im_id] = gts
        self._gt_info[im_id] = infos

    def flush(self) -> None:
        """Write the JSON files of the current scene."""
        if self._scene_id is None:
            return
        scene = self.scene_dir(self._scene_id)
        io.save_json(scene / "scene_camera.json", self._camera)
        io.save_json(scene / "scene_gt.json", self._gt)
        io.save_json(scene / "scene_gt_info.json", self._gt_info)
        self._scene_id = None
        self._camera, self._gt, self._gt_info = {}, {}, {}

    def close(self) -> None:
        self.flush()

    def write_models_info(self, catalog: Catalog) -> Path:
        """``models/models_info.json`` from the catalog (mm), with its symmetries."""
        path = self.root / "models" / "models_info.json"
        io.save_json(path, models_info_from_catalog(catalog))
        return path

    def write_catalog(self, catalog: Catalog) -> Path:
        """A copy of the catalog YAML as ``ROOT/catalog.yaml``, with relative mesh paths made absolute."""
        return write_catalog_copy(catalog, self.root / "catalog.yaml")


def models_info_from_catalog(catalog: Catalog) -> dict[int, dict]:
    """BOP ``models_info`` (mm) keyed by ``class_id``.

    Symmetries come from the catalog entry's extra keys, written in the catalog's metres:
    ``symmetries_continuous: [{axis: [x, y, z], offset: [x, y, z]}]`` and
    ``symmetries_discrete: [[16 floats, row-major 4x4, translation in m]]``; they are stored in mm.
    """
    out = {}
    for obj in catalog:
        v = obj.vertices.astype(np.float64) * 1000.0
        lo, hi = v.min(axis=0), v.max(axis=0)
        info = {
            "diameter": float(obj.diameter * 1000.0),
            "min_x": float(lo[0]), "min_y": float(lo[1]), "min_z": float(lo[2]),
            "size_x": float(hi[0] - lo[0]), "size_y": float(hi[1] - lo[1]), "size_z": float(hi[2] - lo[2]),
        }
        cont = obj.extra.get("symmetries_continuous")
        if cont:
            info["symmetries_continuous"] = [
                {"axis": [float(a) for a in s["axis"]],
                 "offset": [float(o) * 1000.0 for o in s.get("offset", [0.0, 0.0, 0.0])]}
                for s in cont
            ]
        disc = obj.extra.get("symmetries_discrete")
        if disc:
            mats = []
            for m in disc:
                m = np.asarray(m, dtype=np.float64).reshape(4, 4).copy()
                m[:3, 3] *= 1000.0
                mats.append(m.reshape(16).tolist())
            info["symmetries_discrete"] = mats
        out[obj.class_id] = info
    return out


def write_catalog_copy(catalog: Catalog, path: str | Path) -> Path:
    """Copy the catalog's YAML to ``path``; ``pybullet_data://`` stays, other meshes become absolute."""
    path = Path(path)
    if catalog.source is None:
        raise ValueError("catalog has no source YAML to copy")
    data = yaml.safe_load(Path(catalog.source).read_text())
    base = Path(catalog.source).resolve().parent
    for entry in data.get("objects", []):
        mesh = str(entry["mesh"])
        if not mesh.startswith(PYBULLET_DATA) and not Path(mesh).expanduser().is_absolute():
            entry["mesh"] = str((base / mesh).resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Copy of {Path(catalog.source).resolve()} used to build this dataset.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def export_models(catalog: Catalog, root: str | Path, *, max_faces: int = 200_000) -> list[Path]:
    """Write each catalog mesh as ``ROOT/models/obj_{class_id:06d}.ply`` in mm (binary PLY).

    Catalogs whose meshes hold more than ``max_faces`` faces in total are skipped (returns []),
    to keep generated datasets small; ``catalog.yaml`` still points at the meshes.
    """
    import trimesh

    if sum(len(o.mesh.faces) for o in catalog) > max_faces:
        return []
    paths = []
    for obj in catalog:
        mesh = trimesh.Trimesh(vertices=obj.mesh.vertices * 1000.0, faces=obj.mesh.faces, process=False)
        path = Path(root) / MODEL_NAME.format(obj_id=obj.class_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        mesh.export(path, file_type="ply", encoding="binary")
        paths.append(path)
    return paths
