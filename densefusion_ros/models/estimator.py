"""DenseFusion pose estimator (the released ``PoseNet``), batched, with a selectable color backbone.

Convention: quaternions are **w-first** ``[w, x, y, z]`` and are *not* normalised by the network;
``trans`` is a per-point **offset**: the hypothesis of point i is ``t_i = points[i] + trans[i]``
(fact sheet 4.6); points are in metres in the camera (OpenCV optical) frame.

Unlike the release, which only uses batch element 0, every sample ``b`` selects the head rows
of its own object ``obj[b]`` (rows ``4j:4j+4`` of ``conv4_r``, ``3j:3j+3`` of ``conv4_t``, ``j`` of
``conv4_c``). All crops of one batch must have the same H x W (the color net runs on the
stacked tensor); batching crops of different sizes (padding or resizing them to one size and
recomputing ``choose``) is the caller's job. ``num_points`` does not enter any weight: any N works.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choose, check_obj, check_points, select_object
from .backbones import EMBEDDING_DIM, build_color_backbone
from .fusion import PixelwiseFusion, pointwise, row_blocks, to_rows
from .metadata import CheckpointMeta

__all__ = ["BestHypothesis", "DenseFusionEstimator", "EstimatorOutput", "build_estimator"]


class EstimatorOutput(NamedTuple):
    """Per-point predictions of :class:`DenseFusionEstimator` (a tuple, unpack it as 4 values)."""

    quat: torch.Tensor
    """``[B,N,4]`` raw w-first quaternions (normalise before use)."""
    trans: torch.Tensor
    """``[B,N,3]`` translation offsets in metres, relative to each input point."""
    conf: torch.Tensor
    """``[B,N,1]`` confidences in (0, 1)."""
    emb: torch.Tensor
    """``[B,32,N]`` detached color embedding at the chosen pixels (input of the refiner)."""


class BestHypothesis(NamedTuple):
    """The most confident point's prediction per sample (:meth:`DenseFusionEstimator.forward_best`).

    With ``out = forward_head(points, emb, obj)`` and ``index = out.conf[..., 0].argmax(1)``:
    ``quat = out.quat[b, index]``, ``t = points[b, index] + out.trans[b, index]``,
    ``conf = out.conf[b, index, 0]``.
    """

    quat: torch.Tensor
    """``[B,4]`` raw w-first quaternion (normalise before use)."""
    t: torch.Tensor
    """``[B,3]`` absolute translation in metres (the point plus its offset)."""
    conf: torch.Tensor
    """``[B]`` the best confidence."""
    index: torch.Tensor
    """``[B]`` int64 index of the most confident point."""


def _global_part(conv: nn.Conv1d, glob: torch.Tensor, local_channels: int) -> torch.Tensor:
    """The first head layer's global share and bias, ``W[:, 384:] @ glob + b``: ``[B,640]``."""
    return F.linear(glob, conv.weight[:, local_channels:, 0], conv.bias)


def _first_head_layer(conv: nn.Conv1d, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
    """``conv(cat[local, glob repeated N times])`` without materialising the 1408 x N input.

    The 1024 global channels are the same for every point, so their part of the 1x1 conv is one
    ``[B,640]`` vector per sample: ``W[:, :384] @ local + (W[:, 384:] @ glob + b)``. Same result
    up to float rounding; about 3.5x fewer multiply-adds in the largest layers of the head.
    ``local`` is channels-first ``[B,384,N]`` or point rows ``[B*N,384]`` (the output matches).
    """
    c = local.shape[1]
    w = conv.weight[:, :, 0]
    per_sample = _global_part(conv, glob, c)
    if local.dim() == 2:
        b = glob.shape[0]
        return (F.linear(local, w[:, :c]).view(b, -1, w.shape[0]) + per_sample.unsqueeze(1)).view(local.shape[0], -1)
    return F.conv1d(local, w[:, :c, None]) + per_sample.unsqueeze(2)


class DenseFusionEstimator(nn.Module):
    """Per-pixel dense fusion pose estimator (``PoseNet``).

    Args:
        num_objects: number of object classes K (YCB-Video 21, LineMOD 13).
        backbone: color backbone name, ``"psp_resnet18"`` (published) or ``"compact"``.

    Submodule names follow the release (``cnn``, ``feat``, ``conv{1..4}_{r,t,c}``); with the
    published backbone, the keys equal the released ones after ``cnn.model.module.`` -> ``cnn.``.
    Parameters for K=21: 21,449,056 with ``psp_resnet18``, 4,360,144 with ``compact`` (the
    fusion head alone has 3.99 M). ``metadata`` holds the checkpoint's :class:`~.metadata.CheckpointMeta` once loaded.

    Calls: :meth:`forward` = :meth:`embed` (color net, per crop size) + :meth:`forward_head`
    (fusion and heads, all points); :meth:`forward_best` replaces :meth:`forward_head` where only
    the most confident hypothesis is needed (inference).
    """

    def __init__(self, num_objects: int, *, backbone: str = "psp_resnet18") -> None:
        super().__init__()
        if num_objects < 1:
            raise ValueError(f"num_objects must be >= 1, got {num_objects}")
        self.num_objects = num_objects
        self.backbone_name = backbone
        self.cnn = build_color_backbone(backbone)
        self.feat = PixelwiseFusion(EMBEDDING_DIM)
        c = PixelwiseFusion.out_channels
        self.conv1_r = nn.Conv1d(c, 640, 1)
        self.conv1_t = nn.Conv1d(c, 640, 1)
        self.conv1_c = nn.Conv1d(c, 640, 1)
        self.conv2_r = nn.Conv1d(640, 256, 1)
        self.conv2_t = nn.Conv1d(640, 256, 1)
        self.conv2_c = nn.Conv1d(640, 256, 1)
        self.conv3_r = nn.Conv1d(256, 128, 1)
        self.conv3_t = nn.Conv1d(256, 128, 1)
        self.conv3_c = nn.Conv1d(256, 128, 1)
        self.conv4_r = nn.Conv1d(128, num_objects * 4, 1)
        self.conv4_t = nn.Conv1d(128, num_objects * 3, 1)
        self.conv4_c = nn.Conv1d(128, num_objects * 1, 1)
        self.metadata = CheckpointMeta()

    def embed(self, img: torch.Tensor, choose: torch.Tensor) -> torch.Tensor:
        """Color embedding at the chosen pixels.

        Args:
            img: ``[B,3,H,W]`` normalised RGB crops.
            choose: ``[B,N]`` or ``[B,1,N]`` integer indices into the row-major flattened H*W crop.

        Returns:
            ``[B,32,N]`` embedding (log-probabilities). Backbones with a ``forward_at(img, choose)``
            (the compact one) compute their last layers at the N chosen pixels only.
        """
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"img must have shape [B,3,H,W], got {tuple(img.shape)}")
        if choose.dim() == 3 and choose.shape[1] == 1:
            choose = choose[:, 0]
        if choose.dim() != 2 or choose.shape[0] != img.shape[0]:
            raise ValueError(f"choose must have shape [B,N] or [B,1,N] with B={img.shape[0]}, got {tuple(choose.shape)}")
        choose = choose.long()
        check_choose(choose, img.shape[2] * img.shape[3])
        at_pixels = getattr(self.cnn, "forward_at", None)  # backbones that can skip the full-size map
        if at_pixels is not None:
            return at_pixels(img, choose).contiguous()
        out = self.cnn(img)
        if out.shape[-2:] != img.shape[-2:]:
            raise ValueError(
                f"color backbone {self.backbone_name!r} maps a {tuple(img.shape[-2:])} crop to "
                f"{tuple(out.shape[-2:])}; use crop sizes that are multiples of 8 (the pipeline uses multiples of 40)"
            )
        b, d = out.shape[:2]
        return torch.gather(out.reshape(b, d, -1), 2, choose.unsqueeze(1).expand(-1, d, -1))

    def _head(self, name: str, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """Head ``name`` (``"r"``, ``"t"`` or ``"c"``) on ``local [B,384,n]`` + ``glob [B,1024]``: ``[B,K*k,n]``
        (point rows ``local [B*n,384]`` give rows ``[B*n,K*k]``)."""
        x = F.relu(_first_head_layer(getattr(self, f"conv1_{name}"), local, glob))
        x = F.relu(pointwise(getattr(self, f"conv2_{name}"), x))
        x = F.relu(pointwise(getattr(self, f"conv3_{name}"), x))
        return pointwise(getattr(self, f"conv4_{name}"), x)

    def _conf_rows(self, local: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """``_head("c", ...)`` on point rows ``local [B*N,384]``, in blocks of rows
        (:func:`.fusion.row_blocks`) whose maps stay in the CPU cache, ReLUs in place: ``[B*N,K]``."""
        c = local.shape[1]
        per_sample = _global_part(self.conv1_c, glob, c)
        w_local = self.conv1_c.weight[:, :c, 0]
        blocks = []
        for i, block in row_blocks(local.shape[0], glob.shape[0]):
            x = torch.addmm(per_sample[i], local[block], w_local.T).relu_()
            x = pointwise(self.conv3_c, pointwise(self.conv2_c, x).relu_()).relu_()
            blocks.append(pointwise(self.conv4_c, x))
        return torch.cat(blocks)

    def forward_head(self, points: torch.Tensor, emb: torch.Tensor, obj: torch.Tensor) -> EstimatorOutput:
        """Fusion and heads: ``points [B,N,3]``, ``emb [B,32,N]``, ``obj [B]`` -> :class:`EstimatorOutput`."""
        check_points(points)
        obj = check_obj(obj, points.shape[0], self.num_objects)
        local, glob = self.feat.forward_split(points.transpose(1, 2), emb)
        quat = select_object(self._head("r", local, glob), obj, 4)
        trans = select_object(self._head("t", local, glob), obj, 3)
        conf = torch.sigmoid(select_object(self._head("c", local, glob), obj, 1))
        return EstimatorOutput(quat, trans, conf, emb.detach())

    def forward_best(
        self, points: torch.Tensor, emb: torch.Tensor, obj: torch.Tensor, *, rows: bool = False
    ) -> BestHypothesis:
        """The most confident hypothesis per sample, as :meth:`forward_head` + argmax of ``conf``.

        Same inputs as :meth:`forward_head` (``emb`` from :meth:`embed`). The confidence head runs
        on all N points, the rotation and translation heads only at the argmax point (the only
        hypothesis DenseFusion uses), so two of the three heads run on one point instead of N
        (docs/design_notes.md, 'models.estimator: forward_best'). ``rows=True`` runs the point
        layers on point rows ``[B*N,C]``, one GEMM per layer (:mod:`.fusion`; faster on a CPU).
        Same values up to float rounding (with ``rows=False``, ``conf`` and ``index`` exactly);
        see :class:`BestHypothesis`.
        """
        check_points(points)
        obj = check_obj(obj, points.shape[0], self.num_objects)
        b, n, _ = points.shape
        if rows:
            local, glob = self.feat.forward_split(*to_rows(points, emb), batch=b)
            conf = self._conf_rows(local, glob).view(b, n, -1).gather(2, obj.view(b, 1, 1).expand(-1, n, 1))
        else:
            local, glob = self.feat.forward_split(points.transpose(1, 2), emb)
            conf = select_object(self._head("c", local, glob), obj, 1)
        conf, index = torch.sigmoid(conf)[..., 0].max(dim=1)
        samples = torch.arange(b, device=points.device)
        at_best = local.view(b, n, -1)[samples, index] if rows else local[samples, :, index].unsqueeze(2)
        quat = select_object(self._head("r", at_best, glob).view(b, -1, 1), obj, 4)[:, 0]
        trans = select_object(self._head("t", at_best, glob).view(b, -1, 1), obj, 3)[:, 0]
        return BestHypothesis(quat, points[samples, index] + trans, conf, index)

    def forward(
        self, img: torch.Tensor, points: torch.Tensor, choose: torch.Tensor, obj: torch.Tensor
    ) -> EstimatorOutput:
        """Predict one pose hypothesis per point.

        Args:
            img: ``[B,3,H,W]`` float, normalised RGB crops (all of one size).
            points: ``[B,N,3]`` float, points in metres (camera frame), in ``choose`` order.
            choose: ``[B,N]`` or ``[B,1,N]`` int64, indices into the flattened H*W crop.
            obj: ``[B]`` or ``[B,1]`` int64, object index of each sample.

        Returns:
            ``(quat [B,N,4], trans [B,N,3], conf [B,N,1], emb [B,32,N])``, see :class:`EstimatorOutput`.
        """
        check_points(points)
        emb = self.embed(img, choose)
        if emb.shape[2] != points.shape[1]:
            raise ValueError(f"choose has {emb.shape[2]} points but points has {points.shape[1]}")
        return self.forward_head(points, emb, obj)


def build_estimator(*, num_objects: int, backbone: str = "psp_resnet18") -> DenseFusionEstimator:
    """Build a randomly initialised :class:`DenseFusionEstimator`."""
    return DenseFusionEstimator(num_objects, backbone=backbone)
