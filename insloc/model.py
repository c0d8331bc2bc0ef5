"""InsLoc's detector-shaped encoder (spec insloc.md §2.2, §2.8, §3; official ``InsLocFPN``,
``mmdet/models/detectors/insloc_fpn.py``, and ``ConvFCBBoxInsClsHead``), built from torchvision parts:

- backbone: torchvision's ResNet-50 trunk without its fc (23,508,032 parameters, as the official mmdet ResNet-50;
  :class:`ResNet`, whose stem width and blocks are settings for the tiny preset);
- neck: torchvision ``FeaturePyramidNetwork`` with BatchNorm in the 1x1 lateral and 3x3 output convs (no conv bias),
  nearest upsampling, P2-P5 only (no extra level): 3,346,432 parameters; xavier-uniform convs as the official;
- RoI features: ``roi_align(aligned=True)``, 7x7, adaptive sampling, of the box on EVERY level (no FPN level
  assignment), each level's 7x7x256 map through ONE shared head: 4 x [conv3x3 (no bias) + BN + ReLU], flatten,
  fc 12,544 -> 1,024 + ReLU, fc 1,024 -> 1,024 + ReLU, linear 1,024 -> 128 (the projection, N(0, 0.01)); each level's
  embedding L2-normalised (head 16,388,224 parameters; query side 43,242,688).

:class:`InsLocC4` is the C4 variant (spec §2.7): RoIAlign on res4, res5 as the RoI head (27,966,656 parameters).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1
from torchvision.ops import FeaturePyramidNetwork, roi_align

STRIDES = (4, 8, 16, 32)  # P2-P5 (a stem without max pooling halves them)
BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def res_layer(block: str, inplanes: int, planes: int, count: int, stride: int) -> nn.Sequential:
    """One torchvision ResNet stage (``ResNet._make_layer``): ``count`` blocks, the first with the stride and a
    1x1 conv + BN shortcut where the shape changes (default init: the caller applies torchvision's)."""
    kind = BLOCKS[block]
    downsample = None
    if stride != 1 or inplanes != planes * kind.expansion:
        downsample = nn.Sequential(conv1x1(inplanes, planes * kind.expansion, stride),
                                   nn.BatchNorm2d(planes * kind.expansion))
    blocks = [kind(inplanes, planes, stride, downsample)]
    blocks += [kind(planes * kind.expansion, planes) for _ in range(count - 1)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """torchvision's ResNet trunk (its ``BasicBlock`` / ``Bottleneck``, names ``conv1``, ``bn1``, ``layer1-4``, its
    init) with the stem width as a setting: width 64, bottleneck, (3, 4, 6, 3) is torchvision's ResNet-50 without fc
    (same names and 23,508,032 parameters: test); smaller widths / basic blocks, and a stem without the max pooling
    (``stem_pool=False``: strides 2-16 instead of 4-32, for small images) are the tiny setting."""

    def __init__(self, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64,
                 stem_pool: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem_pool else nn.Identity()
        self.strides = STRIDES if stem_pool else tuple(s // 2 for s in STRIDES)
        inplanes, self.out_channels = width, []
        for i, count in enumerate(layers):
            stage = res_layer(block, inplanes, width * 2**i, count, 1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
            inplanes = stage[-1].expansion * width * 2**i
            self.out_channels.append(inplanes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = OrderedDict()
        for i in range(1, len(self.out_channels) + 1):
            x = getattr(self, f"layer{i}")(x)
            out[f"c{i + 1}"] = x
        return out


class RoIEmbeddingHead(nn.Module):
    """The official ``ConvFCBBoxInsClsHead``: shared by every level; (N, C, 7, 7) -> (N, dim) L2-normalised.
    ``avg_pool``: the RoI map is averaged (mmdet ``with_avg_pool``, the C4 variant) instead of flattened."""

    def __init__(self, channels: int = 256, convs: int = 4, roi_size: int = 7, fc: int = 1024, fcs: int = 2,
                 dim: int = 128, avg_pool: bool = False) -> None:
        super().__init__()
        self.avg_pool = avg_pool
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        for layer in layers:  # mmcv ConvModule's init: kaiming normal, fan_out, ReLU
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        sizes = [channels if avg_pool else channels * roi_size * roi_size] + [fc] * fcs
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.projection = nn.Linear(sizes[-1], dim)
        for layer in self.fcs:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    def forward(self, rois: Tensor) -> Tensor:
        x = self.convs(rois)
        x = x.mean(dim=(2, 3)) if self.avg_pool else x.flatten(1)
        for layer in self.fcs:
            x = F.relu(layer(x))
        return F.normalize(self.projection(x), dim=1)


class InsLocFPN(nn.Module):
    """Images (N, 3, H, W) and one box per image -> per-level embeddings (levels, N, dim).

    ``boxes_per_level``: one (N, 4) xyxy tensor per level (the query pools its jittered box on P5 only)."""

    def __init__(self, fpn_channels: int = 256, roi_size: int = 7, head_convs: int = 4, fc: int = 1024,
                 dim: int = 128, block: str = "bottleneck", layers: tuple[int, ...] = (3, 4, 6, 3),
                 width: int = 64, stem_pool: bool = True) -> None:
        super().__init__()
        self.levels = ("p2", "p3", "p4", "p5")
        self.backbone = ResNet(block, layers, width, stem_pool)
        self.neck = FeaturePyramidNetwork(self.backbone.out_channels, fpn_channels, norm_layer=nn.BatchNorm2d)
        for module in self.neck.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
        self.roi_size = roi_size
        self.head = RoIEmbeddingHead(fpn_channels, head_convs, roi_size, fc, 2, dim)

    def features(self, images: Tensor) -> list[Tensor]:
        """P2, P3, P4, P5."""
        return list(self.neck(self.backbone(images)).values())

    def forward(self, images: Tensor, boxes_per_level: list[Tensor]) -> Tensor:
        features = self.features(images)
        if len(boxes_per_level) != len(features):
            raise ValueError(f"give one box tensor per level ({len(features)}), got {len(boxes_per_level)}")
        index = torch.arange(len(images), device=images.device, dtype=images.dtype)[:, None]
        out = []
        for feature, boxes, stride in zip(features, boxes_per_level, self.backbone.strides):
            rois = roi_align(feature, torch.cat([index, boxes.to(images.dtype)], dim=1), self.roi_size,
                             spatial_scale=1 / stride, sampling_ratio=0, aligned=True)
            out.append(self.head(rois))
        return torch.stack(out)


class InsLocC4(nn.Module):
    """The C4 variant (spec insloc.md §2.7): images and one box per image -> (1, N, dim) embeddings.

    Traced in the official code, not configured there: the trunk stops at res4 (stride 16), the box is RoIAligned on
    res4 (``roi_size`` 14, aligned) and res5 (``shared_head.layer4``, stride 2, the official
    ``roi_head.shared_head``; detectron2's ``roi_heads.res5`` after ``convert_pretrained.py --c4``) is the RoI head,
    as in Mask R-CNN C4. Chosen where the official repo is silent: the res5 map averaged (mmdet's C4 ``BBoxHead``
    ``with_avg_pool``), then fc 2,048 -> ``fc`` + ReLU and the ``dim`` projection (the FPN head's fc part; MoCo
    v2's MLP shape at the defaults). One level, so one queue; the query's box is jittered on it."""

    def __init__(self, roi_size: int = 14, fc: int = 2048, dim: int = 128, block: str = "bottleneck",
                 layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64, stem_pool: bool = True) -> None:
        super().__init__()
        self.levels = ("c4",)
        self.backbone = ResNet(block, tuple(layers[:3]), width, stem_pool)
        self.stride = self.backbone.strides[2]
        self.shared_head = nn.Module()
        self.shared_head.layer4 = res_layer(block, self.backbone.out_channels[-1], width * 8, layers[3], 2)
        for module in self.shared_head.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.roi_size = roi_size
        channels = self.shared_head.layer4[-1].expansion * width * 8
        self.head = RoIEmbeddingHead(channels, 0, roi_size, fc, 1, dim, avg_pool=True)

    def forward(self, images: Tensor, boxes_per_level: list[Tensor]) -> Tensor:
        if len(boxes_per_level) != 1:
            raise ValueError(f"the C4 variant pools one level, got {len(boxes_per_level)} box tensors")
        feature = self.backbone(images)["c4"]
        index = torch.arange(len(images), device=images.device, dtype=images.dtype)[:, None]
        rois = roi_align(feature, torch.cat([index, boxes_per_level[0].to(images.dtype)], dim=1), self.roi_size,
                         spatial_scale=1 / self.stride, sampling_ratio=0, aligned=True)
        return self.head(self.shared_head.layer4(rois))[None]
