"""Random-weight networks for tests, harnesses and benchmarks: no training, no bundled weights.

The networks are the project's own (:mod:`densefusion_ros.models`), initialised from a fixed
torch seed so that a test or a benchmark sees the same weights on every run. This module imports
no ROS; tests import it as ``tools.random_networks`` (pytest runs from the repository root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from densefusion_ros.models import build_estimator, build_refiner, build_segmenter, save_checkpoint


def random_networks(num_objects: int, *, backbone: str = "compact", segmenter: bool = False, seed: int = 0) -> dict[str, nn.Module]:
    """An estimator (colour ``backbone``), a refiner and, with ``segmenter``, a compact segmenter
    (``num_objects + 1`` classes) with random weights from torch seed ``seed``, in eval mode.

    Returns ``{"estimator", "refiner"[, "segmenter"]}``.
    """
    torch.manual_seed(seed)
    nets = {"estimator": build_estimator(num_objects=num_objects, backbone=backbone), "refiner": build_refiner(num_objects=num_objects)}
    if segmenter:
        nets["segmenter"] = build_segmenter(num_classes=num_objects + 1, arch="compact")
    return {name: net.eval() for name, net in nets.items()}


def save_random_networks(
    directory: str | Path,
    num_objects: int,
    *,
    num_points: int,
    normalization: Mapping[str, Any],
    object_names: list[str] | None = None,
    segmenter: bool = False,
    seed: int = 0,
) -> dict[str, Path]:
    """:func:`random_networks` (compact backbone) saved with ``save_checkpoint`` to ``directory``.

    Returns ``{"estimator": est.pth, "refiner": ref.pth[, "segmenter": seg.pth]}``.
    """
    directory = Path(directory)
    nets = random_networks(num_objects, segmenter=segmenter, seed=seed)
    meta = dict(object_names=object_names, normalization=normalization)
    paths = {
        "estimator": save_checkpoint(directory / "est.pth", nets["estimator"], kind="estimator", num_points=num_points, **meta),
        "refiner": save_checkpoint(directory / "ref.pth", nets["refiner"], kind="refiner", num_points=num_points, **meta),
    }
    if segmenter:
        paths["segmenter"] = save_checkpoint(directory / "seg.pth", nets["segmenter"], kind="segmenter", **meta)
    return paths
