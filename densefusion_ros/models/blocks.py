"""Small named building blocks (BatchNorm, ReLU) shared by the compact color net and the compact segmenter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvNormAct",
    "FuseUp",
    "GlobalGate",
    "ResidualBlock",
    "channels_last",
    "init_conv_weights",
    "log_softmax_channels",
    "upsample_bilinear",
]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory layout (same shape ``[B,C,H,W]``, NHWC strides).

    The compact networks run in this layout: oneDNN convolutions and, above all, bilinear
    upsampling are several times faster on a CPU than with NCHW strides, and no layout
    conversions are needed between layers.
    """
    return x.contiguous(memory_format=torch.channels_last)


def upsample_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of ``[B,C,h,w]`` to ``[B,C,*size]``, channels-last out."""
    return F.interpolate(channels_last(x), size=size, mode="bilinear", align_corners=False)


def log_softmax_channels(x: torch.Tensor) -> torch.Tensor:
    """``log_softmax(x, dim=1)`` for ``[B,C,H,W]``, computed over the contiguous channel axis of a
    channels-last tensor (faster on a CPU); the result keeps channels-last strides."""
    return F.log_softmax(channels_last(x).permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)


def init_conv_weights(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) weights and zero biases for every ``Conv2d`` in ``module``.

    Modules built on the meta device (shapes only, see ``checkpoint``) are left alone.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvNormAct(nn.Sequential):
    """``Conv2d(bias=False) -> BatchNorm2d -> ReLU`` with 'same' padding (keys ``0.*``, ``1.*``)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        pad = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Basic residual block with BatchNorm: ``[B,in,h,w] -> [B,out,h,w]`` (stride 1)."""

    def __init__(self, in_ch: int, out_ch: int, *, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, 3, dilation=dilation)
        self.conv2 = ConvNormAct(out_ch, out_ch, 3, dilation=dilation, act=False)
        self.shortcut: nn.Module = nn.Identity() if in_ch == out_ch else ConvNormAct(in_ch, out_ch, 1, act=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class GlobalGate(nn.Module):
    """LR-ASPP style global context: ``x * sigmoid(conv1x1(mean_hw(x)))``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True)))


class FuseUp(nn.Module):
    """FPN-style top-down fusion: ``x [B,in,h,w]``, ``skip [B,skip,hs,ws]`` -> ``[B,out,hs,ws]``.

    ``x`` is projected (1x1) to ``out`` channels *before* the bilinear upsampling, the skip is
    projected (1x1) and added, then a depthwise 3x3 + pointwise 1x1 refine the sum. No
    concatenation and no wide convs at high resolution, which keeps it cheap on a CPU.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.top = ConvNormAct(in_ch, out_ch, 1, act=False)
        self.lateral = ConvNormAct(skip_ch, out_ch, 1, act=False)
        self.relu = nn.ReLU(inplace=True)
        self.refine = nn.Sequential(ConvNormAct(out_ch, out_ch, 3, groups=out_ch), ConvNormAct(out_ch, out_ch, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = upsample_bilinear(self.top(x), skip.shape[-2:])
        return self.refine(self.relu(x + self.lateral(skip)))
