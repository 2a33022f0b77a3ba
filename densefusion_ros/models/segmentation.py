"""Semantic segmentation for the first stage of the pipeline: ``img [B,3,H,W] -> logits [B,C,H,W]``.

``C = num_objects + 1``; class 0 is background and class ``j + 1`` is network object index ``j``
(YCB: the class id). The label map is ``logits.argmax(1)``.

Two architectures, chosen with ``arch`` in :func:`build_segmenter`:

* ``"compact"`` (:class:`CompactSegNet`, default, 0.58 M parameters for 22 classes): a U-Net-like
  encoder-decoder with depthwise-separable residual blocks down to output stride 32 (global
  context gate at the bottom) and a light top-down decoder with skip connections back to
  stride 2, then bilinear upsampling of the logits to the input size. Why this layout:

  - CPU speed: the paper budgets 0.03 s for segmentation on a GPU and the node must keep up
    on a CPU, so the cost is 0.74 GMAC at 480x640 (the published SegNet: 191 GMAC); no
    wide convolution runs above stride 4 and the decoder adds instead of concatenating.
  - Full-resolution masks: skips at strides 2-16 keep thin objects and mask borders sharp,
    which matters because the mask decides which depth pixels become points; the output
    has the input's H x W, so masks need no resizing.
  - Swappable: the segmenter is only an interface (image in, per-pixel logits out), so any
    other model (or the published SegNet below, or external labels) can replace it.
* ``"segnet"`` (:class:`SegNet`): the published ``vanilla_segmentation`` SegNet (VGG16
  encoder-decoder with BatchNorm and max-unpooling, 29.46 M parameters for 22 classes), with
  the released key names, so that users' own ``model_*.pth`` files load strictly.
  No SegNet weights were released.

Both accept any H and W: the input is padded internally (edge replication) to a multiple of 32
and the logits are cropped back to H x W. Use the same image normalisation as the estimator
(published: RGB 0-255 with ImageNet mean/std, see :mod:`.transforms`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvNormAct, FuseUp, GlobalGate, channels_last, init_conv_weights, upsample_bilinear
from .metadata import CheckpointMeta

__all__ = ["CompactSegNet", "SegNet", "SEGMENTER_ARCHS", "build_segmenter"]

_STRIDE = 32


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


class DSResidual(nn.Module):
    """Depthwise-separable residual block: ``x + BN(pw(ReLU(BN(dw3x3(x)))))`` then ReLU; ``[B,C,h,w]``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.dw = ConvNormAct(ch, ch, 3, groups=ch)
        self.pw = ConvNormAct(ch, ch, 1, act=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.pw(self.dw(x)))


def _stage(in_ch: int, out_ch: int, blocks: int) -> nn.Sequential:
    """Strided 3x3 conv (/2) followed by ``blocks`` depthwise-separable residual blocks."""
    return nn.Sequential(ConvNormAct(in_ch, out_ch, 3, stride=2), *(DSResidual(out_ch) for _ in range(blocks)))


class CompactSegNet(nn.Module):
    """Compact encoder-decoder segmenter: ``img [B,3,H,W] -> logits [B,num_classes,H,W]``.

    Encoder widths ``(16, 32, 64, 128, 192)`` at strides 2..32; decoder widths
    ``(128, 64, 32, 16)`` at strides 16..2. Any H and W (padded internally to a multiple of 32).
    Runs in channels-last layout; the logits keep channels-last strides.
    Cost for 22 classes: 582,326 parameters, 0.74 GMAC at 480x640 (published SegNet: 191 GMAC);
    CPU timings in docs/design_notes.md, 'models.segmentation: CPU time'.
    """

    def __init__(self, num_classes: int, *, widths: tuple[int, ...] = (16, 32, 64, 128, 192)) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = widths
        self.num_classes = num_classes
        self.stem = ConvNormAct(3, c0, 3, stride=2)
        self.enc1 = _stage(c0, c1, 0)
        self.enc2 = _stage(c1, c2, 2)
        self.enc3 = _stage(c2, c3, 3)
        self.enc4 = nn.Sequential(_stage(c3, c4, 2), GlobalGate(c4))
        self.dec3 = FuseUp(c4, c3, 128)
        self.dec2 = FuseUp(128, c2, 64)
        self.dec1 = FuseUp(64, c1, 32)
        self.dec0 = FuseUp(32, c0, 16)
        self.classifier = nn.Conv2d(16, num_classes, 1)
        init_conv_weights(self)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        x = channels_last(_pad_to_multiple(img, _STRIDE))
        s0 = self.stem(x)
        s1 = self.enc1(s0)
        s2 = self.enc2(s1)
        s3 = self.enc3(s2)
        y = self.enc4(s3)
        y = self.dec0(self.dec1(self.dec2(self.dec3(y, s3), s2), s1), s0)
        logits = upsample_bilinear(self.classifier(y), x.shape[-2:])
        return logits[..., :h, :w]


class SegNet(nn.Module):
    """Published ``vanilla_segmentation`` SegNet: ``img [B,3,H,W] -> logits [B,label_nbr,H,W]``.

    VGG16 encoder (conv 3x3 + BN + ReLU; 2-2-3-3-3 convs, max-pool 2x2 with indices) and a
    mirrored decoder with max-unpooling; ``conv11d`` has no BN/ReLU (raw logits). Key names
    ``convXY[d].*`` / ``bnXY[d].*`` equal the release. Any H, W (padded to a multiple of 32).
    """

    _ENC = (("11", "12"), ("21", "22"), ("31", "32", "33"), ("41", "42", "43"), ("51", "52", "53"))
    _ENC_CH = (64, 128, 256, 512, 512)

    def __init__(self, input_nbr: int = 3, label_nbr: int = 22) -> None:
        super().__init__()
        self.num_classes = label_nbr
        in_ch = input_nbr
        for names, ch in zip(self._ENC, self._ENC_CH):
            for name in names:
                self._add(name, in_ch, ch)
                in_ch = ch
        # decoder: stage i mirrors encoder stage i; its last conv maps to the previous stage's width
        for i in reversed(range(5)):
            names, ch = self._ENC[i], self._ENC_CH[i]
            out_last = self._ENC_CH[i - 1] if i > 0 else label_nbr
            for j, name in enumerate(reversed(names)):
                is_last = j == len(names) - 1
                self._add(name + "d", ch, out_last if is_last else ch, bn=not (is_last and i == 0))

    def _add(self, name: str, in_ch: int, out_ch: int, *, bn: bool = True) -> None:
        self.add_module("conv" + name, nn.Conv2d(in_ch, out_ch, 3, padding=1))
        if bn:
            self.add_module("bn" + name, nn.BatchNorm2d(out_ch, momentum=0.1))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, "bn" + name)(getattr(self, "conv" + name)(x)))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        x = _pad_to_multiple(img, _STRIDE)
        indices = []
        for names in self._ENC:
            for name in names:
                x = self._cbr(name, x)
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for i in reversed(range(5)):
            x = F.max_unpool2d(x, indices[i], 2, 2)
            for name in reversed(self._ENC[i]):
                if i == 0 and name == "11":
                    x = self.conv11d(x)
                else:
                    x = self._cbr(name + "d", x)
        return x[..., :h, :w]


SEGMENTER_ARCHS = ("compact", "segnet")


def build_segmenter(*, num_classes: int, arch: str = "compact") -> nn.Module:
    """Build a randomly initialised segmenter.

    Args:
        num_classes: number of classes including background (objects + 1; published YCB: 22).
        arch: ``"compact"`` (:class:`CompactSegNet`) or ``"segnet"`` (published :class:`SegNet`).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + objects), got {num_classes}")
    if arch == "compact":
        model: nn.Module = CompactSegNet(num_classes)
    elif arch == "segnet":
        model = SegNet(3, num_classes)
    else:
        raise ValueError(f"unknown segmenter arch {arch!r}; choose one of {list(SEGMENTER_ARCHS)}")
    model.arch_name = arch
    model.metadata = CheckpointMeta()
    return model
