"""Small named building blocks (BatchNorm, ReLU) shared by the compact color net and the compact segmenter."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "ConvNormAct",
    "FuseUp",
    "GlobalGate",
    "ResidualBlock",
    "channels_last",
    "fuse_batchnorm",
    "init_conv_weights",
    "log_softmax_channels",
    "upsample_bilinear",
    "upsample_bilinear_at",
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


def _source_index(dst: torch.Tensor, size_in: int, size_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps of output indices ``dst`` as ``F.interpolate(align_corners=False)`` computes
    them: the lower and upper source index and the upper tap's weight."""
    src = ((dst.float() + 0.5) * (size_in / size_out) - 0.5).clamp_min(0.0)
    low = src.long()  # src >= 0: truncation is floor
    return low, (low + 1).clamp_max(size_in - 1), src - low


def upsample_bilinear_at(x: torch.Tensor, size: tuple[int, int] | torch.Size, index: torch.Tensor) -> torch.Tensor:
    """``upsample_bilinear(x, size)`` at some output pixels only: ``[B,C,h,w]`` -> ``[B,N,C]``.

    ``index [B,N]`` holds row-major indices into the ``size`` grid. Same values as upsampling the
    whole map and gathering, up to float rounding, for a fraction of the work when N is small.
    """
    b, c, h, w = x.shape
    height, width = size
    y0, y1, wy = _source_index(torch.div(index, width, rounding_mode="floor"), h, height)
    x0, x1, wx = _source_index(index % width, w, width)
    rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)

    def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return torch.gather(rows, 1, (yy * w + xx).unsqueeze(2).expand(-1, -1, c))

    wy, wx = wy.unsqueeze(2), wx.unsqueeze(2)
    return (1 - wy) * ((1 - wx) * tap(y0, x0) + wx * tap(y0, x1)) + wy * ((1 - wx) * tap(y1, x0) + wx * tap(y1, x1))


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


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` with each :class:`ConvNormAct`'s BatchNorm folded into its conv.

    Eval-mode BatchNorm is an affine map per channel, so it can live in the conv's weights and
    bias: the same outputs up to float rounding, without one pass over every activation map
    (docs/design_notes.md, 'models.blocks: BatchNorm folding'). ``module`` itself is left as
    it is (it may still be trained); it is returned unchanged when it holds nothing to fold (the
    published PSPNet has no BatchNorm). The copy is for inference only: its keys differ.
    """
    if not any(isinstance(m, ConvNormAct) and isinstance(m[1], nn.BatchNorm2d) for m in module.modules()):
        return module
    fused = copy.deepcopy(module).eval()
    for m in fused.modules():
        if isinstance(m, ConvNormAct) and isinstance(m[1], nn.BatchNorm2d):
            m[0] = fuse_conv_bn_eval(m[0], m[1])
            m[1] = nn.Identity()
    return fused


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
