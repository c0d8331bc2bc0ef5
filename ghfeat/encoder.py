"""GH-Feat's hierarchical encoder (Xu et al., CVPR 2021; genforce/ghfeat ``training/networks_ghfeat.py:Encoder``).

ResNet backbone -> one extra bottleneck stage (res6) -> FPN on (res4, res5, res6) -> spatial alignment module (SAM)
-> three dense + BatchNorm heads. The deepest level (res6) predicts the codes of G's coarsest layers, res5 the middle
ones, res4 the finest: the paper's hierarchy. Official details kept:

- TensorFlow 'SAME' padding (stride-2 convolutions and the stem max-pool pad one more pixel at the bottom/right than
  at the top/left), so imported official weights see the same pixels;
- stem: 7x7/2 conv (no bias) -> BN -> LeakyReLU(0.2) -> 3x3/2 max-pool;
- block convolutions carry biases, shortcut and stem convolutions do not; the first unit of every stage (stage 1 too)
  has a projection shortcut (1x1 conv + BN);
- bottleneck (depth 50/101): conv -> BN -> ReLU, twice, conv -> BN, add, ReLU; basic block (depth 18/34): conv ->
  LeakyReLU(0.2) -> BN, twice, add, no activation after the add; the extra stage is always a bottleneck (2048);
- FPN: 3x3 laterals to 512 (not 1x1), nearest 2x upsampling and add, 3x3 output convs; SAM: average-pool every level
  to the deepest one's size, a 3x3 conv on each, then add the deepest (convolved) map to the other two;
- heads: flatten (C, H, W order) -> dense + bias -> BN, no activation; weights N(0, 0.02), biases 0 (official init).

``group_dims`` sets the three heads' widths (coarse, middle, fine). The official StyleGAN v1 layout at 256 px is
:data:`STYLEGAN_V1_256` (4096, 4096, 1792), tiled to ``[N, 14, 1024]`` by :func:`official_layout`; the project's
StyleGAN2 G takes its per-layer styles from ``style_dims()`` instead. Known deviation: BatchNorm's running variance is
PyTorch's (unbiased batch variance), the official sync-BN averages the biased one (decay 0.9 = momentum 0.1, eps 1e-5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STYLEGAN_V1_256 = (4096, 4096, 1792)  # 4 x 1024 (4x4, 8x8), 4 x 1024 (16, 32), 2x512 + 2x256 + 2x128 (64, 128, 256)
DEPTHS = {  # depth -> (filter list: stem then stages, units per stage, bottleneck)
    18: ([64, 64, 128, 256, 512], [2, 2, 2, 2], False),
    34: ([64, 64, 128, 256, 512], [3, 4, 6, 3], False),
    50: ([64, 256, 512, 1024, 2048], [3, 4, 6, 3], True),
    101: ([64, 256, 512, 1024, 2048], [3, 4, 23, 3], True),
}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': total = max((ceil(size / stride) - 1) * stride + kernel - size, 0), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``tf.nn.conv2d(padding='SAME')`` with the official init: weight N(0, 0.02), bias 0 (when it has one)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel, stride=stride, bias=bias)
        nn.init.normal_(self.weight, std=0.02)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = _same_padding(x.shape[2], k, s)
        left, right = _same_padding(x.shape[3], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _same_max_pool(x: Tensor, kernel: int = 3, stride: int = 2) -> Tensor:
    """``tf.nn.max_pool(padding='SAME')``: padded cells never win (-inf)."""
    top, bottom = _same_padding(x.shape[2], kernel, stride)
    left, right = _same_padding(x.shape[3], kernel, stride)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), kernel, stride)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)  # official sync-BN: decay 0.9, epsilon 1e-5


class Bottleneck(nn.Module):
    """Official ``bottleneck``: width = out / 4, stride on the 3x3 conv, projection shortcut when dims change."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, project: bool) -> None:
        super().__init__()
        width = out_channels // 4
        self.conva, self.bna = SameConv2d(in_channels, width, 1), _bn(width)
        self.convb, self.bnb = SameConv2d(width, width, 3, stride), _bn(width)
        self.convc, self.bnc = SameConv2d(width, out_channels, 1), _bn(out_channels)
        self.shortcut = nn.Sequential(SameConv2d(in_channels, out_channels, 1, stride, bias=False),
                                      _bn(out_channels)) if project else None

    def forward(self, x: Tensor) -> Tensor:
        skip = self.shortcut(x) if self.shortcut is not None else x
        y = F.relu(self.bna(self.conva(x)))
        y = F.relu(self.bnb(self.convb(y)))
        return F.relu(self.bnc(self.convc(y)) + skip)


class BasicBlock(nn.Module):
    """Official ``basicblock``: conv -> LeakyReLU(0.2) -> BN twice, add, no activation after the add."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conva, self.bna = SameConv2d(in_channels, out_channels, 3, stride), _bn(out_channels)
        self.convb, self.bnb = SameConv2d(out_channels, out_channels, 3), _bn(out_channels)
        self.shortcut = nn.Sequential(SameConv2d(in_channels, out_channels, 1, stride, bias=False),
                                      _bn(out_channels)) if project else None

    def forward(self, x: Tensor) -> Tensor:
        skip = self.shortcut(x) if self.shortcut is not None else x
        y = self.bna(F.leaky_relu(self.conva(x), 0.2))
        return self.bnb(F.leaky_relu(self.convb(y), 0.2)) + skip


class GHFeatEncoder(nn.Module):
    """E(x) -> (coarse, middle, fine) codes, each (N, group_dims[i]); see the module docstring.

    Official setting (the defaults): ``depth`` 50 (18/34/101 also official), stem 7x7/2 + max-pool/2
    (``stem_stride`` 4), stages at strides 1, 2, 2, 2, the extra 2048-channel stage, FPN/SAM with 512 channels, heads on
    the 4x4 maps of a 256 px input. A smaller setting of the same network (the tiny preset) gives ``filters`` (stem,
    then one per stage), ``units``, ``bottleneck``, ``stem_stride`` 1 (a stride-1 7x7 stem, no max-pool),
    ``extra_channels`` and ``fpn_channels``. The FPN always takes the last two stages and the extra stage; the heads
    flatten the deepest level's side (``head_size`` = resolution / total stride).
    """

    def __init__(self, depth: int | None = 50, group_dims: tuple[int, int, int] = STYLEGAN_V1_256,
                 fpn_channels: int = 512, resolution: int = 256, in_channels: int = 3,
                 filters: list[int] | None = None, units: list[int] | None = None, bottleneck: bool | None = None,
                 stem_stride: int = 4, extra_channels: int = 2048) -> None:
        super().__init__()
        if filters is None or units is None or bottleneck is None:
            if depth not in DEPTHS:
                raise ValueError(f"encoder depth must be one of {sorted(DEPTHS)}, got {depth}")
            filters, units, bottleneck = DEPTHS[depth]
        if len(filters) != len(units) + 1 or len(units) < 2:
            raise ValueError(f"filters (stem + one per stage) and units (>= 2 stages) disagree: {filters}, {units}")
        if stem_stride not in (1, 4):
            raise ValueError(f"stem_stride is 4 (official: 7x7/2 conv + 3x3/2 max-pool) or 1, got {stem_stride}")
        total_stride = stem_stride * 2 ** (len(units) - 1) * 2
        if resolution % total_stride or resolution & (resolution - 1):
            raise ValueError(f"the encoder needs a power-of-two input of at least {total_stride} px (the extra stage "
                             f"is 1/{total_stride} of it), got {resolution}")
        block = Bottleneck if bottleneck else BasicBlock
        self.depth, self.group_dims, self.resolution = depth, tuple(group_dims), resolution
        self.stem_stride = stem_stride
        stem_conv_stride = 2 if stem_stride == 4 else 1
        self.stem_conv = SameConv2d(in_channels, filters[0], 7, stem_conv_stride, bias=False)
        self.stem_bn = _bn(filters[0])
        stages, channels = [], filters[0]
        for i, (out, count) in enumerate(zip(filters[1:], units)):
            unit_list = [block(channels, out, 1 if i == 0 else 2, project=True)]
            unit_list += [block(out, out, 1, project=False) for _ in range(count - 1)]
            stages.append(nn.Sequential(*unit_list))
            channels = out
        self.stages = nn.ModuleList(stages)
        self.stage5 = Bottleneck(channels, extra_channels, 2, project=True)  # the extra stage: res6
        level_channels = [filters[-2], filters[-1], extra_channels]  # res4, res5, res6
        self.laterals = nn.ModuleList(SameConv2d(c, fpn_channels, 3) for c in level_channels)
        self.fpn_out = nn.ModuleList(SameConv2d(fpn_channels, fpn_channels, 3) for _ in level_channels)
        self.fuse = nn.ModuleList(SameConv2d(fpn_channels, fpn_channels, 3) for _ in level_channels)
        self.head_size = resolution // total_stride
        flat = fpn_channels * self.head_size**2
        self.heads = nn.ModuleList(nn.Linear(flat, dim) for dim in reversed(self.group_dims))  # res4, res5, res6
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)
        self.head_bns = nn.ModuleList(nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1) for dim in reversed(self.group_dims))

    def backbone(self, x: Tensor) -> list[Tensor]:
        """Every stage's output and the extra stage's (official at 256 px: res2..res6 at 64, 32, 16, 8, 4 px)."""
        x = F.leaky_relu(self.stem_bn(self.stem_conv(x)), 0.2)
        if self.stem_stride == 4:
            x = _same_max_pool(x)
        levels = []
        for stage in self.stages:
            x = stage(x)
            levels.append(x)
        levels.append(self.stage5(x))
        return levels

    def fused_levels(self, x: Tensor) -> list[Tensor]:
        """The three SAM outputs (res4, res5, res6 levels), each (N, fpn_channels, head_size, head_size)."""
        levels = self.backbone(x)[-3:]
        laterals = [conv(level) for conv, level in zip(self.laterals, levels)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: nearest 2x upsampling and add
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], scale_factor=2.0, mode="nearest")
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_out, laterals)]
        outs = [F.avg_pool2d(o, 2 ** (len(outs) - 1 - i)) if i < len(outs) - 1 else o for i, o in enumerate(outs)]
        fused = [conv(o) for conv, o in zip(self.fuse, outs)]
        return [f + fused[-1] for f in fused[:-1]] + [fused[-1]]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(coarse from res6, middle from res5, fine from res4) codes."""
        fine, middle, coarse = (bn(head(level.flatten(1))) for head, bn, level in
                                zip(self.heads, self.head_bns, self.fused_levels(x)))
        return coarse, middle, fine


def official_layout(coarse: Tensor, middle: Tensor, fine: Tensor, max_length: int = 1024) -> Tensor:
    """The official ``[N, 14, 1024]`` StyleGAN v1 codes: 4 + 4 full rows, then the fine head's 2x512, 2x256, 2x128
    codes each tiled to ``max_length`` (``Latent_out`` in networks_ghfeat.py)."""
    n = coarse.shape[0]
    rows = [coarse.reshape(n, 4, max_length), middle.reshape(n, 4, max_length)]
    start = 0
    for width in (max_length // 2, max_length // 4, max_length // 8):
        part = fine[:, start : start + 2 * width].reshape(n, 2, width)
        rows.append(part.repeat(1, 1, max_length // width))
        start += 2 * width
    return torch.cat(rows, dim=1)
