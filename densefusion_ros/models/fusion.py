"""Per-point fusion of geometry and color (PointNet-style 1x1 Conv1d stacks), fact sheet 1.2 / 1.3.

Shapes use ``B`` samples and ``N`` points. Every concatenation puts **geometry first**.
Global features are the **mean over points** (the release uses ``AvgPool1d(num_points)``,
which is the same number for N = num_points); any N works here.

Two layouts run the same layers with the same weights: the published channels-first
``[B,C,N]`` (``Conv1d``), and **point rows** ``[B*N,C]``, where each 1x1 conv is one GEMM over all
points of all samples (:func:`pointwise`): fewer, larger matrix products, faster on a CPU
(docs/design_notes.md, 'models.fusion: point rows'); the values are equal up to float rounding.
The pipeline's batched path uses rows on CPUs (``rows=True``); training, the published-style loop
and the parity tests use channels-first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PointFusionBase", "PixelwiseFusion", "GlobalFusion", "pointwise", "row_blocks", "to_rows"]


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (1x1) on ``x``: channels-first ``[B,C,N]``, or point rows ``[M,C]`` as one GEMM."""
    if x.dim() == 2:
        return F.linear(x, conv.weight[:, :, 0], conv.bias)
    return conv(x)


def to_rows(points: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``points [B,N,3]``, ``emb [B,32,N]`` -> point rows ``[B*N,3]``, ``[B*N,32]`` (sample-major)."""
    b, n, _ = points.shape
    return points.reshape(b * n, 3), emb.transpose(1, 2).reshape(b * n, emb.shape[1])


ROW_BLOCK = 256
"""Point rows per block in the global branch on rows (:func:`_block_mean`)."""


def _block_mean(fn: Callable[..., torch.Tensor], rows: tuple[torch.Tensor, ...], batch: int) -> torch.Tensor:
    """Each sample's mean over its point rows of ``fn(*rows)``, ``[B,C]``, ``ROW_BLOCK`` rows at a time.

    ``rows`` are row-aligned ``[B*N,*]`` tensors. A block's maps (at most ``[256,1024]`` floats,
    1 MB) stay in the CPU's cache between the GEMM, the ReLU and the sum, instead of a round trip
    through memory for each (docs/design_notes.md, 'models.fusion: row blocks').
    """
    sums: list[torch.Tensor] = []
    for i, block in row_blocks(rows[0].shape[0], batch):
        part = fn(*(r[block] for r in rows)).sum(dim=0)
        if i < len(sums):
            sums[i] = sums[i] + part
        else:
            sums.append(part)
    return torch.stack(sums) / (rows[0].shape[0] // batch)


def row_blocks(num_rows: int, batch: int) -> Iterator[tuple[int, slice]]:
    """``(sample, rows)``: blocks of at most ``ROW_BLOCK`` point rows of ``[B*N,C]``, each within
    one sample, in order."""
    n = num_rows // batch
    for i in range(batch):
        for start in range(i * n, (i + 1) * n, ROW_BLOCK):
            yield i, slice(start, min(start + ROW_BLOCK, (i + 1) * n))


class PointFusionBase(nn.Module):
    """Shared layers: geometry ``conv1`` 3->64, ``conv2`` 64->128; color ``e_conv1`` 32->64,
    ``e_conv2`` 64->128; global ``conv5`` ``global_in``->512, ``conv6`` 512->1024."""

    def __init__(self, emb_dim: int, global_in: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 64, 1)
        self.conv2 = nn.Conv1d(64, 128, 1)
        self.e_conv1 = nn.Conv1d(emb_dim, 64, 1)
        self.e_conv2 = nn.Conv1d(64, 128, 1)
        self.conv5 = nn.Conv1d(global_in, 512, 1)
        self.conv6 = nn.Conv1d(512, 1024, 1)

    def point_features(self, points: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``points [B,3,N]``, ``emb [B,32,N]`` -> ``(pointfeat_1 [B,128,N], pointfeat_2 [B,256,N])``;
        or point rows ``[M,3]``, ``[M,32]`` -> ``[M,128]``, ``[M,256]``."""
        geo = F.relu(pointwise(self.conv1, points))
        col = F.relu(pointwise(self.e_conv1, emb))
        pointfeat_1 = torch.cat([geo, col], dim=1)
        geo = F.relu(pointwise(self.conv2, geo))
        col = F.relu(pointwise(self.e_conv2, col))
        pointfeat_2 = torch.cat([geo, col], dim=1)
        return pointfeat_1, pointfeat_2

    def _global(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """``mean_N(relu(conv6(relu(conv5(x)))))``: ``[B,1024]``; point rows block by block."""
        if x.dim() == 3:
            return F.relu(self.conv6(F.relu(self.conv5(x)))).mean(dim=2)
        return _block_mean(lambda r: self._conv6_rows(pointwise(self.conv5, r)), (x,), batch)

    def _conv6_rows(self, x5: torch.Tensor) -> torch.Tensor:
        """``relu(conv6(relu(x5)))`` on point rows, in place (the inference layout)."""
        return pointwise(self.conv6, x5.relu_()).relu_()


class PixelwiseFusion(PointFusionBase):
    """``PoseNetFeat``: ``points [B,3,N]``, ``emb [B,32,N]`` -> ``[B,1408,N]``.

    Output channels: ``[pointfeat_1 (128), pointfeat_2 (256), global (1024, repeated over N)]``;
    the global feature is ``mean_N(relu(conv6(relu(conv5(pointfeat_2)))))``.
    """

    out_channels = 1408

    def __init__(self, emb_dim: int = 32) -> None:
        super().__init__(emb_dim, global_in=256)

    def forward_split(self, points: torch.Tensor, emb: torch.Tensor, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1408 channels without the repetition: ``(local [B,384,N], global [B,1024])``.

        ``local = [pointfeat_1, pointfeat_2]``; :meth:`forward` is ``cat([local, global repeated N times])``.
        Point rows (``points [B*N,3]``, ``emb [B*N,32]``, ``batch=B``) give ``local [B*N,384]``.
        """
        pointfeat_1, pointfeat_2 = self.point_features(points, emb)
        glob = self._global(pointfeat_2, points.shape[0] if batch is None else batch)
        return torch.cat([pointfeat_1, pointfeat_2], dim=1), glob

    def forward(self, points: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        local, glob = self.forward_split(points, emb)
        return torch.cat([local, glob.unsqueeze(2).expand(-1, -1, points.shape[2])], dim=1)


class GlobalFusion(PointFusionBase):
    """``PoseRefineNetFeat``: ``points [B,3,N]``, ``emb [B,32,N]`` -> global feature ``[B,1024]``.

    ``conv5`` takes ``pointfeat_3 = [geo64, col64, geo128, col128]`` (384 channels).
    """

    out_channels = 1024

    def __init__(self, emb_dim: int = 32) -> None:
        super().__init__(emb_dim, global_in=384)

    def forward(self, points: torch.Tensor, emb: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Channels-first ``[B,3,N]``, ``[B,32,N]``, or point rows ``[B*N,3]``, ``[B*N,32]`` with ``batch=B``."""
        pointfeat_1, pointfeat_2 = self.point_features(points, emb)
        return self._global(torch.cat([pointfeat_1, pointfeat_2], dim=1), points.shape[0] if batch is None else batch)

    def _conv5_columns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``conv5``'s weight ``[512,384]`` split by input: ``geo64, col64, geo128, col128``."""
        w = self.conv5.weight[:, :, 0]
        g1, c1 = self.conv1.out_channels, self.e_conv1.out_channels
        g2 = self.conv2.out_channels
        return w[:, :g1], w[:, g1 : g1 + c1], w[:, g1 + c1 : g1 + c1 + g2], w[:, g1 + c1 + g2 :]

    def colour_term(self, emb: torch.Tensor) -> torch.Tensor:
        """``conv5``'s colour share, its bias included, for point rows ``emb [M,32]``: ``[M,512]``.

        The colour branch does not depend on the pose, so K refiner iterations on one batch can
        compute it once and pass it to :meth:`forward_geometry` (about 0.1 M of the 0.74 M
        multiply-adds per point and iteration).
        """
        col1 = F.relu(pointwise(self.e_conv1, emb))
        col2 = F.relu(pointwise(self.e_conv2, col1))
        _, w_col1, _, w_col2 = self._conv5_columns()
        return torch.addmm(torch.addmm(self.conv5.bias, col1, w_col1.T), col2, w_col2.T)

    def forward_geometry(self, points: torch.Tensor, colour: torch.Tensor, batch: int) -> torch.Tensor:
        """:meth:`forward` on point rows ``points [B*N,3]`` with the colour branch given as
        ``colour_term(emb)``: ``[B,1024]``, the same values up to float rounding."""
        geo1 = F.relu(pointwise(self.conv1, points))
        geo2 = F.relu(pointwise(self.conv2, geo1))
        w_geo1, _, w_geo2, _ = self._conv5_columns()

        def block(geo1: torch.Tensor, geo2: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
            return self._conv6_rows(torch.addmm(torch.addmm(colour, geo1, w_geo1.T), geo2, w_geo2.T))

        return _block_mean(block, (geo1, geo2, colour), batch)
