"""DDP under ``torchrun``: which rank this process is, its device, and the two reductions the trainer needs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from densefusion_ros.runtime import resolve_device

__all__ = ["DistInfo", "all_reduce_sum", "any_rank", "init_distributed", "rank_device"]


@dataclass
class DistInfo:
    """This process's place in the process group (one process, rank 0, when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (``RANK``/``WORLD_SIZE`` set, world > 1):
    nccl on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def rank_device(name: str, di: DistInfo) -> torch.device:
    """The device ``name`` resolves to; on CUDA, a DDP rank takes the GPU of its local rank."""
    device = resolve_device(name)
    if device.type == "cuda":
        device = torch.device("cuda", di.local_rank if di.enabled else (device.index or 0))
        torch.cuda.set_device(device)
    return device


def all_reduce_sum(values: list[float], di: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (``values`` itself when not distributed)."""
    if not di.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, di: DistInfo, device: torch.device) -> bool:
    """Whether ``flag`` is true on any rank."""
    if not di.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
