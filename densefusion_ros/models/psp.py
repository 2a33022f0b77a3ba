"""The published DenseFusion color embedding network (``lib/pspnet.py`` + ``lib/extractors.py``).

Layout, as released (fact sheet section 1.1):

* ``feats``: a ResNet-18 layout **without any BatchNorm**, every conv ``bias=False``.
  Stem conv 7x7/2 -> ReLU -> max-pool 3x3/2; layer1 (64), layer2 (128, stride 2),
  layer3 (256, stride 1, block 1 dilated 2), layer4 (512, stride 1, block 1 dilated 4).
  Output stride 8.
* ``psp``: pyramid pooling over bins (1, 2, 3, 6), each bin a 1x1 conv 512->512 (no bias),
  upsampled with ``align_corners=False``, concatenated as ``[s1, s2, s3, s6, feats]`` (2560 ch),
  then a 1x1 bottleneck 2560->1024 (with bias) and ReLU.
* three ``PSPUpsample`` blocks (x2 bilinear ``align_corners=True`` -> conv 3x3 -> PReLU),
  1024->256->64->64, with Dropout2d(0.3) before the first and Dropout2d(0.15) before the others.
* ``final``: 1x1 conv 64->32 and ``LogSoftmax`` over channels: the 32-d per-pixel embedding
  is a vector of log-probabilities.
* ``classifier`` (Linear 256->256, ReLU, Linear 256->21) is never called; it is kept so that
  released checkpoints load strictly.

Attribute names follow the release, so the keys of :class:`PSPNet` equal the released keys
after the prefix ``cnn.model.module.`` is removed (done in :mod:`densefusion_ros.models.checkpoint`).

Output size equals the input size when H and W are multiples of 8 (crops of the official
pipeline are multiples of 40); otherwise the decoder gives ``8 * ceil(H / 8)`` etc.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "DilatedResNet18", "PSPModule", "PSPUpsample", "PSPNet", "psp_resnet18"]


def _conv3x3(in_ch: int, out_ch: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block without normalisation: conv3x3 -> ReLU -> conv3x3 (+ shortcut) -> ReLU.

    Both convs use the block's dilation; only the first may be strided. ``downsample`` is a
    ``Sequential(Conv1x1)`` (key ``downsample.0.weight``) or ``None``.
    """

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride=stride, dilation=dilation)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_ch, out_ch, dilation=dilation)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        return self.relu(out + shortcut)


def _make_layer(in_ch: int, out_ch: int, *, stride: int, dilation: int) -> nn.Sequential:
    # Block 0 is undilated (and carries the stride); block 1 has the layer's dilation.
    return nn.Sequential(
        BasicBlock(in_ch, out_ch, stride=stride),
        BasicBlock(out_ch, out_ch, dilation=dilation),
    )


class DilatedResNet18(nn.Module):
    """Normalisation-free dilated ResNet-18 (output stride 8).

    Shapes: ``x [B,3,H,W] -> (layer4 [B,512,H/8,W/8], layer3 [B,256,H/8,W/8])``
    (sizes rounded up by the strided convs and the pool).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _make_layer(64, 64, stride=1, dilation=1)
        self.layer2 = _make_layer(64, 128, stride=2, dilation=1)
        self.layer3 = _make_layer(128, 256, stride=1, dilation=2)
        self.layer4 = _make_layer(256, 512, stride=1, dilation=4)
        for m in self.modules():
            # published init: N(0, sqrt(2 / (k*k*out))); skipped on the meta device (shapes only)
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x3 = self.layer3(x)
        return self.layer4(x3), x3


class PSPModule(nn.Module):
    """Pyramid pooling: ``[B,C,h,w] -> [B,out,h,w]``; concat order ``[bins..., feats]``."""

    def __init__(self, in_ch: int = 512, out_ch: int = 1024, sizes: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(in_ch, in_ch, 1, bias=False)) for s in sizes
        )
        self.bottleneck = nn.Conv2d(in_ch * (len(sizes) + 1), out_ch, 1)
        self.relu = nn.ReLU()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, w = feats.shape[-2:]
        priors = [
            F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=False) for stage in self.stages
        ]
        priors.append(feats)
        return self.relu(self.bottleneck(torch.cat(priors, dim=1)))


class PSPUpsample(nn.Module):
    """x2 bilinear (``align_corners=True``) -> conv3x3 (bias) -> PReLU: ``[B,in,h,w] -> [B,out,2h,2w]``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.PReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PSPNet(nn.Module):
    """Published color embedding net: ``img [B,3,H,W] -> emb [B,32,H,W]`` (log-probabilities).

    H and W should be multiples of 8 (see module docstring). About 17.46 M parameters,
    of which 71,189 belong to the unused ``classifier``.
    """

    out_channels = 32

    def __init__(self, *, num_classifier_outputs: int = 21) -> None:
        super().__init__()
        self.feats = DilatedResNet18()
        self.psp = PSPModule(512, 1024, (1, 2, 3, 6))
        self.drop_1 = nn.Dropout2d(p=0.3)
        self.up_1 = PSPUpsample(1024, 256)
        self.up_2 = PSPUpsample(256, 64)
        self.up_3 = PSPUpsample(64, 64)
        self.drop_2 = nn.Dropout2d(p=0.15)
        self.final = nn.Sequential(nn.Conv2d(64, self.out_channels, 1), nn.LogSoftmax(dim=1))
        # Never used in forward; present in every released checkpoint (always 21 outputs).
        self.classifier = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, num_classifier_outputs))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        f, _ = self.feats(img)
        p = self.drop_1(self.psp(f))
        p = self.drop_2(self.up_1(p))
        p = self.drop_2(self.up_2(p))
        p = self.up_3(p)
        return self.final(p)


def psp_resnet18() -> PSPNet:
    """Build the published PSPNet(ResNet-18) color embedding net (random init, no pretraining)."""
    return PSPNet()
