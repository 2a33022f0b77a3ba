"""Color embedding backbones: ``img [B,3,H,W] -> emb [B,32,H,W]`` log-probabilities over channels.

Two are registered, selectable by name through :func:`build_color_backbone`:

* ``"psp_resnet18"``: the published PSPNet / dilated ResNet-18 (:mod:`.psp`), 17.46 M parameters;
  needed for the released weights. H and W must be multiples of 8.
* ``"compact"``: :class:`CompactColorNet`, a small CPU-friendly encoder-decoder (0.37 M
  parameters, 52x fewer multiply-adds) with the same interface and any H and W. Use it for
  models trained with this project.

Both end with ``LogSoftmax(dim=1)`` so the fusion head sees the same kind of embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .blocks import (
    ConvNormAct,
    FuseUp,
    GlobalGate,
    ResidualBlock,
    channels_last,
    init_conv_weights,
    log_softmax_channels,
    upsample_bilinear,
    upsample_bilinear_at,
)
from .psp import psp_resnet18

__all__ = [
    "COLOR_BACKBONES",
    "CompactColorNet",
    "build_color_backbone",
    "compact_color_net",
    "EMBEDDING_DIM",
]

EMBEDDING_DIM = 32


class CompactColorNet(nn.Module):
    """Small encoder-decoder color embedding net for CPU inference.

    ``img [B,3,H,W] -> emb [B,32,H,W]`` (log-softmax over the 32 channels), any H and W. The
    output has channels-last strides (use ``reshape``, not ``view``, to flatten it).

    Encoder (output stride 8): stem conv/2 (24 ch) -> conv/2 + residual block (40, stride 4)
    -> conv/2 + residual block (80, stride 8) -> residual block (96) with a global context gate.
    Decoder: two FPN-style skip fusions (stride 4: 64 ch, stride 2: 32 ch), a 1x1 conv to 32
    logits, bilinear upsampling to H x W and LogSoftmax. Runs in channels-last layout.

    Cost: 371,816 parameters; 0.125 GMAC at 120x120 and 0.50 GMAC at 240x240, against 6.46 and
    25.8 GMAC for the published :class:`~densefusion_ros.models.psp.PSPNet` (17.46 M parameters);
    CPU timings against PSPNet are in docs/design_notes.md, 'models.backbones: CPU time'.
    BatchNorm: train with several crops per batch (or freeze BN) rather than batches of one.
    """

    out_channels = EMBEDDING_DIM

    def __init__(self, *, widths: tuple[int, int, int, int] = (24, 40, 80, 96)) -> None:
        super().__init__()
        c0, c1, c2, c3 = widths
        self.stem = ConvNormAct(3, c0, 3, stride=2)
        self.stage1 = nn.Sequential(ConvNormAct(c0, c1, 3, stride=2), ResidualBlock(c1, c1))
        self.stage2 = nn.Sequential(ConvNormAct(c1, c2, 3, stride=2), ResidualBlock(c2, c2))
        self.context = nn.Sequential(ResidualBlock(c2, c3), GlobalGate(c3))
        self.up1 = FuseUp(c3, c1, 64)
        self.up2 = FuseUp(64, c0, 32)
        self.head = nn.Conv2d(32, self.out_channels, 1)
        init_conv_weights(self)

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W] -> [B,32,ceil(H/2),ceil(W/2)]`` decoder features before the head."""
        s0 = self.stem(channels_last(img))
        s1 = self.stage1(s0)
        x = self.context(self.stage2(s1))
        return self.up2(self.up1(x, s1), s0)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        logits = upsample_bilinear(self.head(self.forward_features(img)), img.shape[-2:])
        return log_softmax_channels(logits)

    def forward_at(self, img: torch.Tensor, choose: torch.Tensor) -> torch.Tensor:
        """``forward(img)`` at the chosen pixels only: ``choose [B,N]`` (flattened H*W indices) ->
        ``[B,32,N]``. The upsampling and LogSoftmax run on N pixels instead of H*W; same values
        up to float rounding."""
        logits = upsample_bilinear_at(self.head(self.forward_features(img)), img.shape[-2:], choose)
        return torch.log_softmax(logits, dim=2).transpose(1, 2)


def compact_color_net() -> CompactColorNet:
    """Build the compact color embedding net (random init)."""
    return CompactColorNet()


COLOR_BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "psp_resnet18": psp_resnet18,
    "compact": compact_color_net,
}


def build_color_backbone(name: str) -> nn.Module:
    """Build a registered color backbone by name (``"psp_resnet18"`` or ``"compact"``)."""
    try:
        return COLOR_BACKBONES[name]()
    except KeyError:
        raise ValueError(f"unknown color backbone {name!r}; choose one of {sorted(COLOR_BACKBONES)}") from None

