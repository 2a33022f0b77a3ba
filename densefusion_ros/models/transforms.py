"""Image normalisation that matches how a checkpoint was trained.

A normalisation is a dict ``{"scale": s, "mean": [3 floats], "std": [3 floats]}`` applied to RGB
values as ``(rgb * s - mean) / std`` per channel. Every checkpoint records its own (see
:func:`densefusion_ros.models.read_metadata` and ``metadata_of(model).normalization``).

Convention: images are **RGB** (not BGR), ``uint8`` 0-255.

* Released DenseFusion weights (:data:`PUBLISHED_NORMALIZATION`): ``scale = 1.0``, i.e. the
  0-255 values are **not** divided by 255 before the ImageNet mean/std (fact sheet 4.5, a known
  quirk of the release, j96w/DenseFusion#39). The network input then spans about -2.1 .. 1130.
* :data:`IMAGENET_NORMALIZATION`: the usual ``scale = 1/255`` with ImageNet mean/std.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGENET_NORMALIZATION",
    "PUBLISHED_NORMALIZATION",
    "check_normalization",
    "normalize_image",
    "rescale_rgb",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PUBLISHED_NORMALIZATION: dict[str, Any] = {"scale": 1.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
"""The released DenseFusion weights: RGB 0-255 (not divided by 255), ImageNet mean/std."""

IMAGENET_NORMALIZATION: dict[str, Any] = {"scale": 1.0 / 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
"""RGB divided by 255, ImageNet mean/std."""


def check_normalization(normalization: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a normalisation dict and return a clean copy ``{"scale": float, "mean": [3], "std": [3]}``.

    Raises:
        ValueError: on missing keys, wrong lengths, or non-positive / non-finite values.
    """
    try:
        scale = float(normalization["scale"])
        mean = [float(v) for v in normalization["mean"]]
        std = [float(v) for v in normalization["std"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"normalization must be {{'scale': float, 'mean': [3], 'std': [3]}}, got {normalization!r}") from e
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"normalization mean and std need 3 values each, got {mean}, {std}")
    if not (math.isfinite(scale) and scale > 0) or any(not (math.isfinite(s) and s > 0) for s in std):
        raise ValueError(f"normalization scale and std must be positive, got scale={scale}, std={std}")
    return {"scale": scale, "mean": mean, "std": std}


def normalize_image(
    rgb: np.ndarray | torch.Tensor,
    normalization: Mapping[str, Any],
    *,
    channels_last: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Turn RGB images into network input.

    Args:
        rgb: ``[H,W,3]`` or ``[B,H,W,3]`` RGB (``uint8`` 0-255, or float in the same 0-255 range),
            numpy array or tensor; with ``channels_last=False``: ``[3,H,W]`` or ``[B,3,H,W]``.
        normalization: ``{"scale", "mean", "std"}`` of the checkpoint (see module docstring).
        channels_last: whether the channel axis of ``rgb`` is last.
        device: where to put the result (default: the input tensor's device, or CPU).

    Returns:
        float32 ``[3,H,W]`` or ``[B,3,H,W]``: ``(rgb * scale - mean) / std``.
    """
    norm = check_normalization(normalization)
    x = torch.from_numpy(np.ascontiguousarray(rgb)) if isinstance(rgb, np.ndarray) else rgb
    if device is not None:
        x = x.to(device)
    if x.dim() not in (3, 4):
        raise ValueError(f"rgb must be [H,W,3], [B,H,W,3] (or channels-first), got {tuple(x.shape)}")
    if channels_last:
        x = x.movedim(-1, -3)
    if x.shape[-3] != 3:
        raise ValueError(f"rgb must have 3 channels, got shape {tuple(x.shape)} (channels_last={channels_last})")
    x = x.to(torch.float32)
    mean, std = _mean_std(tuple(norm["mean"]), tuple(norm["std"]), x.device)
    return ((x * norm["scale"] - mean) / std).contiguous()


@functools.lru_cache(maxsize=16)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[3,1,1]`` mean and std tensors on ``device``, made once: no host-to-device copy per image
    (which a CUDA graph could not capture)."""
    with torch.inference_mode(False):  # ordinary tensors, usable in training too
        as_tensor = functools.partial(torch.tensor, dtype=torch.float32, device=device)
        return as_tensor(mean).view(3, 1, 1), as_tensor(std).view(3, 1, 1)


def rescale_rgb(rgb: np.ndarray, scale: float) -> np.ndarray:
    """``rgb`` resized by ``scale`` with area interpolation: how a segmenter trained at
    ``--seg-scale`` saw its frames, so training and the pipeline resize the same way."""
    if scale == 1.0:
        return rgb
    height, width = rgb.shape[:2]
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
