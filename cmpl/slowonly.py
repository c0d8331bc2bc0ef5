"""SlowOnly-R50 ("3D-ResNet50"), the primary F of CMPL, and its narrow auxiliary A (spec cmpl.md §3).

The definition is mmaction2's ``ResNet3dSlowOnly`` (depth 50, ``conv1_kernel=(1, 7, 7)``, ``inflate=(0, 0, 1, 1)``,
no temporal striding) with its ``I3DHead`` (global average pool, dropout 0.5, fc):

- stem: 1x7x7 conv, spatial stride 2, no bias -> BN -> ReLU -> 1x3x3 max-pool, spatial stride 2 (padding 0x1x1);
- four stages of bottlenecks (3, 4, 6, 3 blocks; output channels 4 x width x 1, 2, 4, 8); spatial stride 1, 2, 2, 2
  on the 1x3x3 middle conv (mmaction2 ``style='pytorch'``); the first conv of a block is 3x1x1 in inflated stages
  (res4 and res5: ``inflate_style='3x1x1'``) and 1x1x1 elsewhere; projection shortcut (1x1x1 conv + BN, stride on
  it) in each stage's first block; ReLU after the add;
- every conv is bias-free and followed by BatchNorm3d.

``width`` is the stem's channels (``base_channels``): 64 for F (backbone 31,634,496 parameters, features 2,048),
16 for the x1/4 auxiliary A (1,988,880, features 512). ``inflate`` is a per-stage tuple so the auxiliary's can be set
separately (spec §3: whether A inflates every stage, SlowFast-fast style, is not known).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

STAGE_BLOCKS = (3, 4, 6, 3)  # ResNet-50
SLOWONLY_INFLATE = (0, 0, 1, 1)


def _conv_bn(in_channels: int, out_channels: int, kernel: tuple[int, int, int],
             stride: tuple[int, int, int] = (1, 1, 1), relu: bool = True) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    layers: list[nn.Module] = [nn.Conv3d(in_channels, out_channels, kernel, stride, padding, bias=False),
                               nn.BatchNorm3d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Bottleneck3d(nn.Module):
    """mmaction2 ``Bottleneck3d`` (expansion 4): conv1 (3x1x1 when inflated, else 1x1x1), conv2 1x3x3 with the
    spatial stride, conv3 1x1x1; ReLU after the residual add."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, spatial_stride: int, inflate: bool) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv_bn(in_channels, planes, (3, 1, 1) if inflate else (1, 1, 1))
        self.conv2 = _conv_bn(planes, planes, (1, 3, 3), (1, spatial_stride, spatial_stride))
        self.conv3 = _conv_bn(planes, out_channels, (1, 1, 1), relu=False)
        self.downsample = None
        if spatial_stride != 1 or in_channels != out_channels:
            self.downsample = _conv_bn(in_channels, out_channels, (1, 1, 1), (1, spatial_stride, spatial_stride),
                                       relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class SlowOnly(nn.Module):
    """Clips (N, 3, T, H, W) -> features (N, 32 x width, T, H / 32, W / 32).

    ``width`` 64 is SlowOnly-R50; 16 its x1/4 auxiliary. ``inflate`` per stage (1: temporal kernel 3 in conv1).
    ``stem_stride`` 2 (no max-pool) or 1 (no stem stride either) are smaller settings for small frames: 4x / 16x
    the official number of positions."""

    def __init__(self, width: int = 64, inflate: Sequence[int] = SLOWONLY_INFLATE,
                 stage_blocks: Sequence[int] = STAGE_BLOCKS, in_channels: int = 3, stem_stride: int = 4) -> None:
        super().__init__()
        if len(inflate) != len(stage_blocks):
            raise ValueError(f"inflate has {len(inflate)} entries for {len(stage_blocks)} stages: give one per stage")
        if stem_stride not in (1, 2, 4):
            raise ValueError("stem_stride is 4 (official: stride-2 conv + stride-2 max-pool), 2 (no max-pool) or 1, "
                             f"got {stem_stride}")
        self.width = width
        self.stem = _conv_bn(in_channels, width, (1, 7, 7), (1, 2, 2) if stem_stride > 1 else (1, 1, 1))
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if stem_stride == 4 else nn.Identity()
        stages, channels = [], width
        for i, (blocks, inflated) in enumerate(zip(stage_blocks, inflate)):
            planes = width * 2**i
            layers = [Bottleneck3d(channels, planes, 1 if i == 0 else 2, bool(inflated))]
            channels = planes * Bottleneck3d.expansion
            layers += [Bottleneck3d(channels, planes, 1, bool(inflated)) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.pool(self.stem(x)))


class I3DHead(nn.Module):
    """mmaction2 ``I3DHead``: global average pool over (T, H, W), dropout, fc (weights N(0, 0.01), bias 0)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features.mean(dim=(2, 3, 4))))


class Recognizer(nn.Module):
    """Backbone + head: clips (N, 3, T, H, W) in normalised pixel units -> class logits (N, num_classes)."""

    def __init__(self, num_classes: int, width: int = 64, inflate: Sequence[int] = SLOWONLY_INFLATE,
                 stage_blocks: Sequence[int] = STAGE_BLOCKS, dropout: float = 0.5, stem_stride: int = 4) -> None:
        super().__init__()
        self.backbone = SlowOnly(width, inflate, stage_blocks, stem_stride=stem_stride)
        self.head = I3DHead(self.backbone.feature_dim, num_classes, dropout)

    def forward(self, clips: Tensor) -> Tensor:
        return self.head(self.backbone(clips))


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in module.parameters())
