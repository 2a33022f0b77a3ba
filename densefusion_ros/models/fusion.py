"""Per-point fusion of geometry and color (PointNet-style 1x1 Conv1d stacks), fact sheet 1.2 / 1.3.

Shapes use ``B`` samples and ``N`` points. Every concatenation puts **geometry first**.
Global features are the **mean over points** (the release uses ``AvgPool1d(num_points)``,
which is the same number for N = num_points); any N works here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PointFusionBase", "PixelwiseFusion", "GlobalFusion"]


class PointFusionBase(nn.Module):
    """Shared first layers: geometry ``conv1`` 3->64, ``conv2`` 64->128; color ``e_conv1`` 32->64, ``e_conv2`` 64->128."""

    def __init__(self, emb_dim: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 64, 1)
        self.conv2 = nn.Conv1d(64, 128, 1)
        self.e_conv1 = nn.Conv1d(emb_dim, 64, 1)
        self.e_conv2 = nn.Conv1d(64, 128, 1)

    def point_features(self, points: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``points [B,3,N]``, ``emb [B,32,N]`` -> ``(pointfeat_1 [B,128,N], pointfeat_2 [B,256,N])``."""
        geo = F.relu(self.conv1(points))
        col = F.relu(self.e_conv1(emb))
        pointfeat_1 = torch.cat([geo, col], dim=1)
        geo = F.relu(self.conv2(geo))
        col = F.relu(self.e_conv2(col))
        pointfeat_2 = torch.cat([geo, col], dim=1)
        return pointfeat_1, pointfeat_2


class PixelwiseFusion(PointFusionBase):
    """``PoseNetFeat``: ``points [B,3,N]``, ``emb [B,32,N]`` -> ``[B,1408,N]``.

    Output channels: ``[pointfeat_1 (128), pointfeat_2 (256), global (1024, repeated over N)]``;
    the global feature is ``mean_N(relu(conv6(relu(conv5(pointfeat_2)))))``.
    """

    out_channels = 1408

    def __init__(self, emb_dim: int = 32) -> None:
        super().__init__(emb_dim)
        self.conv5 = nn.Conv1d(256, 512, 1)
        self.conv6 = nn.Conv1d(512, 1024, 1)

    def forward_split(self, points: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1408 channels without the repetition: ``(local [B,384,N], global [B,1024])``.

        ``local = [pointfeat_1, pointfeat_2]``; :meth:`forward` is ``cat([local, global repeated N times])``.
        """
        pointfeat_1, pointfeat_2 = self.point_features(points, emb)
        x = F.relu(self.conv6(F.relu(self.conv5(pointfeat_2))))
        return torch.cat([pointfeat_1, pointfeat_2], dim=1), x.mean(dim=2)

    def forward(self, points: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        local, glob = self.forward_split(points, emb)
        return torch.cat([local, glob.unsqueeze(2).expand(-1, -1, points.shape[2])], dim=1)


class GlobalFusion(PointFusionBase):
    """``PoseRefineNetFeat``: ``points [B,3,N]``, ``emb [B,32,N]`` -> global feature ``[B,1024]``.

    ``conv5`` takes ``pointfeat_3 = [geo64, col64, geo128, col128]`` (384 channels).
    """

    out_channels = 1024

    def __init__(self, emb_dim: int = 32) -> None:
        super().__init__(emb_dim)
        self.conv5 = nn.Conv1d(384, 512, 1)
        self.conv6 = nn.Conv1d(512, 1024, 1)

    def forward(self, points: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        pointfeat_1, pointfeat_2 = self.point_features(points, emb)
        x = torch.cat([pointfeat_1, pointfeat_2], dim=1)
        x = F.relu(self.conv6(F.relu(self.conv5(x))))
        return x.mean(dim=2)
