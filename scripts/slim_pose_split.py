"""Copy a BOP split keeping only what estimator and refiner training read, to ship it to a GPU box.

Pose training sees each annotated object through its crop box (RGB) and its visible mask (depth):
this copy keeps the RGB inside the union of the crop boxes (black elsewhere, stored as JPEG) and
the depth inside the dilated union of the visible masks (zero elsewhere), drops ``mask/``, and
copies the JSON files and ``mask_visib/`` (PNGs at the highest compression). A 640x480 frame
shrinks from about 520 kB to about 50 kB. Not for segmenter training (it needs the whole frame), and train without
``--occluder-prob`` / ``--mask-noise-prob`` (they read pixels outside the kept regions).

    python scripts/slim_pose_split.py .data/demo train /tmp/slim [--frames 1200] [--quality 92]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from densefusion_ros.data import io
from densefusion_ros.data.bop import DEPTH_NAME, MASK_VISIB_NAME, BopDataset
from densefusion_ros.sampling import crop_box, mask_box


def slim_frame(bop: BopDataset, scene_id: int, im_id: int, out_scene: Path, quality: int, dilate_px: int) -> None:
    src = bop.scene_dir(scene_id)
    rgb = io.read_rgb(bop.rgb_path(scene_id, im_id))
    depth = io.read_raw(src / DEPTH_NAME.format(im_id=im_id))
    keep_rgb = np.zeros(rgb.shape[:2], bool)
    keep_depth = np.zeros(rgb.shape[:2], np.uint8)
    for gt_idx in range(len(bop.scene_gt(scene_id)[im_id])):
        name = MASK_VISIB_NAME.format(im_id=im_id, gt_idx=gt_idx)
        mask = io.read_mask(src / name)
        box = mask_box(mask)
        if box is not None:
            c = crop_box(box, rgb.shape[:2])
            keep_rgb[c.rmin : c.rmax, c.cmin : c.cmax] = True
            keep_depth |= mask.astype(np.uint8)
        io.write_raw(out_scene / name, mask.astype(np.uint8) * 255, png_compression=9)
    kernel = np.ones((2 * dilate_px + 1, 2 * dilate_px + 1), np.uint8)
    keep_depth = cv2.dilate(keep_depth, kernel) > 0
    io.write_rgb(out_scene / "rgb" / f"{im_id:06d}.jpg", np.where(keep_rgb[..., None], rgb, 0), jpg_quality=quality)
    depth_kept = np.where(keep_depth, depth, 0).astype(depth.dtype)
    io.write_raw(out_scene / DEPTH_NAME.format(im_id=im_id), depth_kept, png_compression=9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("split")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=None, help="at most this many frames (whole scenes, in order)")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality of the kept RGB")
    p.add_argument("--dilate-px", type=int, default=4, help="depth kept this many pixels around the masks")
    a = p.parse_args(argv)
    bop = BopDataset(a.dataset, a.split, load_masks=False)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(a.dataset).glob("*.*"):  # catalog.yaml, synth configs
        shutil.copy2(f, out / f.name)
    if (Path(a.dataset) / "models").is_dir() and not (out / "models").exists():
        shutil.copytree(Path(a.dataset) / "models", out / "models")
    done_scenes: set[int] = set()
    for n, (scene_id, im_id) in enumerate(bop.index):
        if a.frames is not None and n >= a.frames and scene_id not in done_scenes:
            break
        out_scene = out / a.split / f"{scene_id:06d}"
        if scene_id not in done_scenes:
            out_scene.mkdir(parents=True, exist_ok=True)
            for js in bop.scene_dir(scene_id).glob("*.json"):
                shutil.copy2(js, out_scene / js.name)
            done_scenes.add(scene_id)
        slim_frame(bop, scene_id, im_id, out_scene, a.quality, a.dilate_px)
    print(f"{len(done_scenes)} scenes -> {out / a.split}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
