"""Pack what the tracker's GPU check (``scripts/gpu_tracker_check.sh``) needs on a bare GPU box.

A lent GPU machine has torch, numpy, OpenCV, SciPy and pytest, but not trimesh or pybullet, and
reaches no network. This writes ``OUT`` (default ``.data/gpu``, ignored by git, carried to the machine):

* ``seq/seq_gpu/``: the first ``--frames`` frames of one sequence of a BOP split (held-out
  ``seq_eval`` scene 0 by default), RGB as JPEG and depth as is, about 0.25 MB a frame;
* ``site/``: trimesh (pure Python, copied from this environment) and a ``pybullet_data`` package
  holding only the demo catalog's meshes, so that ``pybullet_data://`` paths resolve there.

    python scripts/gpu_tracker_bundle.py [--dataset .data/seq --split seq_eval --scene 0 --frames 90] [--out .data/gpu]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from densefusion_ros.catalog import Catalog
from densefusion_ros.data import io
from densefusion_ros.data.bop import DEPTH_NAME, BopDataset
from densefusion_ros.resources import share_path

SPLIT = "seq_gpu"


def copy_sequence(dataset: BopDataset, scene_id: int, frames: int, out_scene: Path, quality: int) -> int:
    """The first ``frames`` frames of ``scene_id`` into ``out_scene`` (rgb/ as JPEG, depth/ copied, the
    scene's JSON files cut to those frames). Returns the frames copied."""
    src = dataset.scene_dir(scene_id)
    ids = sorted(i for s, i in dataset.index if s == scene_id)[:frames]
    (out_scene / "rgb").mkdir(parents=True, exist_ok=True)
    (out_scene / "depth").mkdir(parents=True, exist_ok=True)
    for im_id in ids:
        rgb = io.read_rgb(dataset.rgb_path(scene_id, im_id))
        io.write_rgb(out_scene / "rgb" / f"{im_id:06d}.jpg", rgb, jpg_quality=quality)
        shutil.copy(src / DEPTH_NAME.format(im_id=im_id), out_scene / DEPTH_NAME.format(im_id=im_id))
    for name in ("scene_camera.json", "scene_gt.json", "scene_gt_info.json"):
        table = json.loads((src / name).read_text())
        (out_scene / name).write_text(json.dumps({k: v for k, v in table.items() if int(k) in ids}))
    return len(ids)


def copy_meshes(catalog: Catalog, site: Path) -> list[Path]:
    """Each mesh of ``catalog`` from pybullet_data, its .mtl and the textures it names, into a
    ``pybullet_data`` package under ``site`` whose ``getDataPath()`` is its own folder."""
    import pybullet_data

    root, package = Path(pybullet_data.getDataPath()), site / "pybullet_data"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        '"""The demo catalog\'s meshes alone, for a machine without pybullet (scripts/gpu_tracker_bundle.py)."""\n\n'
        "import os\n\n\ndef getDataPath() -> str:\n    return os.path.dirname(__file__)\n"
    )
    copied = []
    for info in catalog:
        mesh = Path(info.mesh_path)
        if root not in mesh.parents:
            continue
        files = [mesh]
        mtl = mesh.with_suffix(".mtl")
        if mtl.is_file():
            files.append(mtl)
            files += [mesh.parent / name for name in re.findall(r"^\s*map_\w+\s+(\S+)", mtl.read_text(), re.M)]
        for f in files:
            target = package / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, target)
            copied.append(target)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=".data/seq")
    parser.add_argument("--split", default="seq_eval")
    parser.add_argument("--scene", type=int, default=0)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the RGB images")
    parser.add_argument("--out", type=Path, default=Path(".data/gpu"))
    args = parser.parse_args(argv)
    import trimesh

    shutil.rmtree(args.out, ignore_errors=True)
    count = copy_sequence(BopDataset(args.dataset, args.split, load_masks=False), args.scene, args.frames,
                          args.out / "seq" / SPLIT / f"{args.scene:06d}", args.quality)  # fmt: skip
    site = args.out / "site"
    shutil.copytree(Path(trimesh.__file__).parent, site / "trimesh", ignore=shutil.ignore_patterns("__pycache__"))
    meshes = copy_meshes(Catalog.load(share_path("config", "objects", "demo.yaml")), site)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {count} frames of {args.split} scene {args.scene}, trimesh {trimesh.__version__}, "
          f"{len(meshes)} mesh files; {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
