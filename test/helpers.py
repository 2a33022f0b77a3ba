"""Test helpers shared by several test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

import torch

from densefusion_ros.models import build_estimator, build_refiner, build_segmenter, save_checkpoint


def save_random_networks(
    directory: Path,
    num_objects: int,
    *,
    num_points: int,
    normalization: dict,
    object_names: list[str] | None = None,
    segmenter: bool = False,
    seed: int = 0,
) -> dict[str, Path]:
    """Random-weight compact estimator, refiner (and compact segmenter) saved with ``save_checkpoint``.

    Returns ``{"estimator": est.pth, "refiner": ref.pth[, "segmenter": seg.pth]}`` in ``directory``.
    """
    torch.manual_seed(seed)
    meta = dict(num_points=num_points, object_names=object_names, normalization=normalization)
    est = build_estimator(num_objects=num_objects, backbone="compact")
    paths = {
        "estimator": save_checkpoint(directory / "est.pth", est, **meta),
        "refiner": save_checkpoint(directory / "ref.pth", build_refiner(num_objects=num_objects), **meta),
    }
    if segmenter:
        seg = build_segmenter(num_classes=num_objects + 1, arch="compact")
        paths["segmenter"] = save_checkpoint(
            directory / "seg.pth", seg, object_names=object_names, normalization=normalization
        )
    return paths
