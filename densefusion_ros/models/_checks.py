"""Input checks and object-row selection shared by the estimator and the refiner."""

from __future__ import annotations

import torch


def check_obj(obj: torch.Tensor, batch: int, num_objects: int) -> torch.Tensor:
    """Accept ``obj`` as ``[B]`` or ``[B,1]`` (or 0-d when B=1) integer tensor; return ``[B]`` int64.

    The value range is checked except while a CUDA graph is captured, which allows no reading of
    values on the host (the pipeline checks every index against the estimator beforehand).
    """
    if obj.dim() == 0:
        obj = obj.reshape(1)
    if obj.dim() == 2 and obj.shape[1] == 1:
        obj = obj[:, 0]
    if obj.dim() != 1 or obj.shape[0] != batch:
        raise ValueError(f"obj must have shape [B] or [B,1] with B={batch}, got {tuple(obj.shape)}")
    if obj.dtype.is_floating_point or obj.dtype == torch.bool:
        raise TypeError(f"obj must be an integer tensor, got {obj.dtype}")
    obj = obj.long()
    capturing = obj.is_cuda and torch.cuda.is_current_stream_capturing()  # no host sync in a CUDA graph
    if obj.numel() and not capturing and (int(obj.min()) < 0 or int(obj.max()) >= num_objects):
        raise IndexError(f"object index out of range [0, {num_objects}): {obj.tolist()}")
    return obj


def check_choose(choose: torch.Tensor, num_pixels: int) -> None:
    """Raise ``IndexError`` unless every ``choose`` index lies in ``[0, num_pixels)`` (not checked
    while a CUDA graph is captured, as in :func:`check_obj`)."""
    capturing = choose.is_cuda and torch.cuda.is_current_stream_capturing()
    if choose.numel() and not capturing and (int(choose.min()) < 0 or int(choose.max()) >= num_pixels):
        raise IndexError(f"choose indices must lie in [0, {num_pixels}) (the flattened crop)")


def check_points(points: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``points`` is ``[B,N,3]``."""
    if points.dim() != 3 or points.shape[2] != 3:
        raise ValueError(f"points must have shape [B,N,3], got {tuple(points.shape)}")


def select_object(out: torch.Tensor, obj: torch.Tensor, k: int) -> torch.Tensor:
    """``out [B,K*k,N]`` -> rows of each sample's object, transposed to ``[B,N,k]``."""
    b, _, n = out.shape
    out = out.view(b, -1, k, n)
    return out[torch.arange(b, device=out.device), obj].transpose(1, 2).contiguous()
