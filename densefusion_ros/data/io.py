"""Small file helpers shared by the dataset readers and writers (OpenCV images, BOP-style JSON).

Convention: images in memory are RGB ``(H, W, 3)`` uint8; OpenCV's BGR order stays inside this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image; grey images are repeated to three channels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    if image.dtype != np.uint8:  # 16-bit colour (rare): keep the top byte
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_raw(path: str | Path) -> np.ndarray:
    """An image exactly as stored (uint16 depth stays uint16)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def read_mask(path: str | Path) -> np.ndarray:
    """A boolean mask: any non-zero channel counts as inside (white on black, or an RGB mask)."""
    image = read_raw(path)
    return image.any(axis=2) if image.ndim == 3 else image > 0


def write_rgb(path: str | Path, rgb: np.ndarray, jpg_quality: int = 95) -> None:
    """Write an RGB uint8 image as PNG or JPEG (by suffix)."""
    path = Path(path)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    _imwrite(path, bgr, params)


def write_raw(path: str | Path, image: np.ndarray, png_compression: int | None = None) -> None:
    """Write a grey uint8/uint16 image (depth, mask, label) losslessly as PNG (compression 0-9)."""
    params = [] if png_compression is None else [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
    _imwrite(Path(path), np.ascontiguousarray(image), params)


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a boolean mask as a 0/255 uint8 PNG (the BOP convention)."""
    write_raw(path, np.asarray(mask, dtype=bool).astype(np.uint8) * 255)


def _imwrite(path: Path, image: np.ndarray, params: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, params):
        raise OSError(f"cannot write image {path}")


def load_json(path: str | Path, keys_to_int: bool = False) -> Any:
    """Read JSON; with ``keys_to_int`` the top-level keys (BOP image / object ids) become ints."""
    with open(path) as f:
        content = json.load(f)
    if keys_to_int:
        content = {int(k): v for k, v in content.items()}
    return content


def save_json(path: str | Path, content: dict) -> None:
    """Write a dict the way bop_toolkit does: one top-level key per line, compact values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for key in sorted(content, key=lambda k: (int(k) if str(k).lstrip("-").isdigit() else 0, str(k))):
        lines.append(f"  {json.dumps(str(key))}: {json.dumps(_to_builtin(content[key]), sort_keys=True)}")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    tmp.replace(path)


def _to_builtin(value: Any) -> Any:
    """numpy scalars and arrays to plain Python for ``json``."""
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_builtin(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
