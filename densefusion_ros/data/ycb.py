"""YCB-Video in its native layout (YCB_Video_Dataset, as DenseFusion's ``datasets/ycb`` reads it).

Layout::

    ROOT/data/{video:04d}/{frame:06d}-color.png   RGB (data_syn: RGBA)
    ROOT/data/{video:04d}/{frame:06d}-depth.png   uint16, metres = raw / factor_depth (10000)
    ROOT/data/{video:04d}/{frame:06d}-label.png   uint8 class id per pixel, 0 = background
    ROOT/data/{video:04d}/{frame:06d}-meta.mat    cls_indexes [n, 1] (1-based), poses [3, 4, n] (m),
                                                  intrinsic_matrix 3x3, factor_depth
    ROOT/data_syn/{frame:06d}-*                   the synthetic frames, same format
    ROOT/image_sets/{train,val,keyframe,classes}.txt, ROOT/models/{class_name}/points.xyz (m)

Frame ids are the prefixes of DenseFusion's list files: ``data/0048/000001`` or ``data_syn/000001``
(``0048/000001`` as in ``image_sets/*.txt`` is read as ``data/0048/000001``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator

import numpy as np

from densefusion_ros.data import io
from densefusion_ros.frame import Frame, GtObject, depth_to_metres

#: The two cameras of YCB-Video (fact sheet 4.4): videos < 60 and data_syn use UW, the rest CMU.
K_UW = np.array([[1066.778, 0.0, 312.9869], [0.0, 1067.487, 241.3109], [0.0, 0.0, 1.0]])
K_CMU = np.array([[1077.836, 0.0, 323.7872], [0.0, 1078.189, 279.6921], [0.0, 0.0, 1.0]])


def _normalise_id(frame_id: str) -> str:
    frame_id = frame_id.strip().strip("/")
    return frame_id if frame_id.startswith(("data/", "data_syn/")) else f"data/{frame_id}"


def intrinsics(frame_id: str, meta: dict | None = None) -> np.ndarray:
    """``meta['intrinsic_matrix']`` when present, else the camera of the video (UW below 60)."""
    if meta is not None and "intrinsic_matrix" in meta:
        return np.asarray(meta["intrinsic_matrix"], dtype=np.float64).reshape(3, 3)
    parts = _normalise_id(frame_id).split("/")
    video = int(parts[1]) if parts[0] == "data" else 0
    return (K_UW if video < 60 else K_CMU).copy()


class YcbVideoDataset:
    """YCB-Video frames with ground truth.

    Args:
        root: the ``YCB_Video_Dataset`` folder.
        frames: a list file (absolute, or ``image_sets/<name>.txt`` when given a bare name such as
            ``"keyframe"``), or a list of frame ids; default: every ``*-meta.mat`` under ``data/``.
        with_label: also put the ``-label.png`` image into :attr:`Frame.label` (this replaces the
            pipeline's own segmentation, so it is off by default).

    Each :class:`GtObject` has ``class_id`` = the 1-based YCB class (``classes.txt`` order), the
    pose in metres and ``mask = (label == class_id)``, the visible mask.
    """

    def __init__(self, root: str | Path, frames: str | Path | list[str] | None = None, *, with_label: bool = False) -> None:
        self.root = Path(root)
        self.with_label = with_label
        if frames is None:
            ids = sorted(p.relative_to(self.root).as_posix()[: -len("-meta.mat")]
                         for p in (self.root / "data").glob("*/*-meta.mat"))
        elif isinstance(frames, (str, Path)):
            path = Path(frames)
            if not path.is_file():
                path = self.root / "image_sets" / f"{frames}.txt"
            ids = [line for line in path.read_text().splitlines() if line.strip()]
        else:
            ids = list(frames)
        self.index: list[str] = [_normalise_id(i) for i in ids]

    @functools.cached_property
    def classes(self) -> list[str]:
        """Class names; ``classes[class_id - 1]`` is the name of ``class_id``."""
        for path in (self.root / "classes.txt", self.root / "image_sets" / "classes.txt"):
            if path.is_file():
                return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return []

    @functools.lru_cache(maxsize=32)
    def model_points(self, class_id: int) -> np.ndarray:
        """``models/<class name>/points.xyz`` as ``(N, 3)`` float32 metres."""
        path = self.root / "models" / self.classes[class_id - 1] / "points.xyz"
        points = np.loadtxt(path, dtype=np.float32, usecols=(0, 1, 2)).reshape(-1, 3)
        points.setflags(write=False)
        return points

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Frame:
        return self.load_frame(self.index[i])

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]

    def load_meta(self, frame_id: str) -> dict:
        from scipy.io import loadmat

        return loadmat(str(self.root / f"{_normalise_id(frame_id)}-meta.mat"))

    def load_frame(self, frame_id: str) -> Frame:
        prefix = self.root / _normalise_id(frame_id)
        meta = self.load_meta(frame_id)
        rgb = io.read_rgb(f"{prefix}-color.png")
        factor = float(np.asarray(meta["factor_depth"]).reshape(-1)[0])
        depth_m = depth_to_metres(io.read_raw(f"{prefix}-depth.png"), 1.0 / factor)
        label = io.read_raw(f"{prefix}-label.png")
        if label.ndim == 3:
            label = label[:, :, 0]
        K = intrinsics(frame_id, meta)
        cls = np.asarray(meta["cls_indexes"]).reshape(-1).astype(int)
        poses = np.asarray(meta["poses"], dtype=np.float64).reshape(3, 4, -1)  # [3, 4, n]
        gt = [
            GtObject(class_id=int(c), R=poses[:, :3, i].copy(), t=poses[:, 3, i].copy(), mask=label == c)
            for i, c in enumerate(cls)
        ]
        return Frame(rgb=rgb, depth_m=depth_m, K=K, label=label if self.with_label else None, gt=gt)
