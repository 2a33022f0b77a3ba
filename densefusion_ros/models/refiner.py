"""DenseFusion iterative pose refiner (the released ``PoseRefineNet``), batched.

Inputs per iteration (fact sheet 4.8): the points expressed in the current estimate's object
frame, ``R^T (p - t)``, and the color embedding returned by the estimator (the refiner does not
run the CNN). Outputs a residual pose: a raw **w-first** quaternion and an **absolute**
translation (not a per-point offset); compose as ``R <- R R2``, ``t <- R t2 + t``.
Each sample selects the rows of its own object.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_obj, check_points
from .backbones import EMBEDDING_DIM
from .fusion import GlobalFusion, to_rows
from .metadata import CheckpointMeta

__all__ = ["DenseFusionRefiner", "RefinerOutput", "build_refiner"]


class RefinerOutput(NamedTuple):
    """Residual pose of :class:`DenseFusionRefiner` (a tuple, unpack it as 2 values)."""

    quat: torch.Tensor
    """``[B,4]`` raw w-first quaternion (normalise before use)."""
    trans: torch.Tensor
    """``[B,3]`` translation in metres."""


class DenseFusionRefiner(nn.Module):
    """Residual pose refiner (``PoseRefineNet``).

    Args:
        num_objects: number of object classes K.

    Keys equal the released ones (``feat.*``, ``conv{1,2}_{r,t}``, ``conv3_{r,t}``, Linear heads).
    Parameters: 1,941,331 for K=21, 1,934,107 for K=13.
    """

    def __init__(self, num_objects: int) -> None:
        super().__init__()
        if num_objects < 1:
            raise ValueError(f"num_objects must be >= 1, got {num_objects}")
        self.num_objects = num_objects
        self.feat = GlobalFusion(EMBEDDING_DIM)
        self.conv1_r = nn.Linear(1024, 512)
        self.conv1_t = nn.Linear(1024, 512)
        self.conv2_r = nn.Linear(512, 128)
        self.conv2_t = nn.Linear(512, 128)
        self.conv3_r = nn.Linear(128, num_objects * 4)
        self.conv3_t = nn.Linear(128, num_objects * 3)
        self.metadata = CheckpointMeta()

    def colour_term(self, emb: torch.Tensor) -> torch.Tensor:
        """The pose-independent colour branch for ``emb [B,32,N]``: ``[B*N,512]``, for ``forward(...,
        colour=)`` in every refiner iteration of this batch (:meth:`.GlobalFusion.colour_term`)."""
        return self.feat.colour_term(emb.transpose(1, 2).reshape(-1, emb.shape[1]))

    def forward(
        self, points: torch.Tensor, emb: torch.Tensor, obj: torch.Tensor, *, rows: bool = False, colour: torch.Tensor | None = None
    ) -> RefinerOutput:
        """Predict the residual pose.

        Args:
            points: ``[B,N,3]`` float, points in the current estimate's object frame (metres).
            emb: ``[B,32,N]`` float, the estimator's embedding (``EstimatorOutput.emb``).
            obj: ``[B]`` or ``[B,1]`` int64 object indices.
            rows: run the point layers on point rows ``[B*N,C]``, one GEMM per layer (faster on a
                CPU, same values up to float rounding; see :mod:`.fusion`).
            colour: with ``rows``: ``colour_term(emb)``, computed once for several iterations on
                the same ``emb`` (``emb`` is then only checked for its shape).

        Returns:
            ``(quat [B,4], trans [B,3])``, see :class:`RefinerOutput`.
        """
        check_points(points)
        b = points.shape[0]
        if emb.dim() != 3 or emb.shape[0] != b or emb.shape[2] != points.shape[1]:
            raise ValueError(f"emb must have shape [B,32,N]={[b, EMBEDDING_DIM, points.shape[1]]}, got {list(emb.shape)}")
        obj = check_obj(obj, b, self.num_objects)
        if colour is not None:
            if not rows:
                raise ValueError("colour= needs rows=True")
            x = self.feat.forward_geometry(points.reshape(-1, 3), colour, batch=b)
        else:
            x = self.feat(*to_rows(points, emb), batch=b) if rows else self.feat(points.transpose(1, 2), emb)
        rx = F.relu(self.conv2_r(F.relu(self.conv1_r(x))))
        tx = F.relu(self.conv2_t(F.relu(self.conv1_t(x))))
        rows = torch.arange(b, device=x.device)
        quat = self.conv3_r(rx).view(b, self.num_objects, 4)[rows, obj]
        trans = self.conv3_t(tx).view(b, self.num_objects, 3)[rows, obj]
        return RefinerOutput(quat, trans)


def build_refiner(*, num_objects: int) -> DenseFusionRefiner:
    """Build a randomly initialised :class:`DenseFusionRefiner`."""
    return DenseFusionRefiner(num_objects)
