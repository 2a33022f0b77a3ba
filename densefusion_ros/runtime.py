"""Where torch runs: the device and the number of CPU threads, one rule each for the pipeline,
the node, training and evaluation."""

from __future__ import annotations

import os

import torch

__all__ = ["cpu_threads", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_threads(requested: int | None, world_size: int = 1) -> int:
    """Intra-op CPU threads: ``requested``, or the cores left free by other processes.

    On a shared machine more threads than free cores is far slower than one thread
    (``docs/benchmarks/`` and the model card have the measurements), so the default is the
    per-rank share of the cores minus the 1-minute load average at start, at least 1.
    """
    if requested:
        return int(requested)
    cores = os.cpu_count() or 1
    share = max(1, cores // max(1, world_size))
    try:
        busy = int(round(os.getloadavg()[0] / max(1, world_size)))
    except OSError:  # not available on this platform
        busy = 0
    return max(1, min(share, share - busy))
