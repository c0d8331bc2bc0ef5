"""DeepLab-v2 segmenter of ProCA (spec §3): a dilated torchvision ResNet feature extractor + ASPP-V2 classifier.

The extractor is torchvision's ResNet (Bottleneck "v1.5", stride on the 3x3 conv) with
``replace_stride_with_dilation=[False, True, True]`` (output stride 8), returning layer4 (post-ReLU); avgpool and fc
are dropped (official core/models/feature_extractor.py). Widths and block counts are parameters so that the tiny
preset runs the same code at a smaller setting: ``blocks=(3, 4, 23, 3), base_width=64`` is ResNet-101
(42,500,160 parameters). Parameter names match torchvision's, so an ImageNet ``resnet101-*.pth`` loads directly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from common.checkpoint import CheckpointError, read_weights

RESNET101_BLOCKS = (3, 4, 23, 3)


class ResNetFeatureExtractor(nn.Module):
    """Dilated ResNet up to layer4: ``(N, 3, H, W) -> (N, 4*8*base_width, ceil(H/8), ceil(W/8))`` at OS 8."""

    def __init__(
        self,
        blocks: Sequence[int] = RESNET101_BLOCKS,
        base_width: int = 64,
        dilate: Sequence[bool] = (False, True, True),
    ) -> None:
        super().__init__()
        self.inplanes = base_width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(base_width, blocks[0], stride=1, dilate=False)
        self.layer2 = self._make_layer(base_width * 2, blocks[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(base_width * 4, blocks[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(base_width * 8, blocks[3], stride=2, dilate=dilate[2])
        self.out_channels = base_width * 8 * Bottleneck.expansion
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, count: int, stride: int, dilate: bool) -> nn.Sequential:
        """torchvision ``ResNet._make_layer``: a dilated layer keeps the resolution; its first block uses the
        previous dilation and the others the multiplied one (layer3: 1 then 2, layer4: 2 then 4)."""
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, dilation=previous_dilation)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, dilation=self.dilation) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPPClassifierV2(nn.Module):
    """DeepLab-v2 ASPP-L head: parallel 3x3 convs (dilation = padding = rate) summed; no BN, no ReLU.

    Weights N(0, 0.01) as the official ``ASPP_Classifier_V2``; 4 * (2048*9*C + C) parameters at paper scale.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor) -> Tensor:
        return sum(branch(features) for branch in self.branches)


class DeepLabV2(nn.Module):
    """``forward(x) -> (features, logits)`` at feature resolution; ProCA contrasts both (multi-level, §2.2)."""

    def __init__(
        self,
        num_classes: int,
        blocks: Sequence[int] = RESNET101_BLOCKS,
        base_width: int = 64,
        dilate: Sequence[bool] = (False, True, True),
        aspp_rates: Sequence[int] = (6, 12, 18, 24),
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = ResNetFeatureExtractor(blocks, base_width, dilate)
        self.classifier = ASPPClassifierV2(self.backbone.out_channels, num_classes, aspp_rates)
        self.freeze_bn = freeze_bn
        if freeze_bn:
            for bn in self._batch_norms():
                bn.requires_grad_(False)

    def _batch_norms(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> DeepLabV2:
        """With ``freeze_bn`` (official MODEL.FREEZE_BN) BatchNorm layers stay in eval mode with fixed affine
        parameters and running statistics."""
        super().train(mode)
        if self.freeze_bn:
            for bn in self._batch_norms():
                bn.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.backbone(x)
        return features, self.classifier(features)

    def predict(self, x: Tensor) -> Tensor:
        """Logits bilinearly upsampled (align_corners=True) to the input size."""
        _, logits = self(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def load_imagenet_weights(backbone: ResNetFeatureExtractor, path: str | os.PathLike) -> None:
    """Load a torchvision ImageNet ResNet state dict (e.g. resnet101-5d3b4d8f.pth) into ``backbone``; fc dropped.

    The official code loads the same torchvision file with mmcv (spec §3). Nothing is downloaded.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"ImageNet weights not found at {path}; download torchvision's resnet101-5d3b4d8f.pth (or -63fe2227.pth) "
            "yourself and set model.imagenet_weights to its path, or set it to '' for random initialisation"
        )
    state = read_weights(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a torchvision state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = backbone.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    mismatched = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path} does not fit the configured backbone (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"shape mismatch {mismatched[:3]}); it must be a torchvision ResNet of the configured depth and width"
        )
    backbone.load_state_dict(state)


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(backbone parameters, classifier parameters): the official code gives the classifier 10x the LR."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return ([p for p in inner.backbone.parameters() if p.requires_grad],
            [p for p in inner.classifier.parameters() if p.requires_grad])
