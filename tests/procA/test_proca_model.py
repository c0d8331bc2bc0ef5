"""DeepLab-v2 on torchvision ResNet-101: spec §3 parameter counts, dilations, output stride, ImageNet loading."""

import pytest
import torch
import torchvision

from common.checkpoint import CheckpointError
from procA.model import ASPPClassifierV2, DeepLabV2, ResNetFeatureExtractor, load_imagenet_weights


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_scale_parameter_counts_and_structure():
    model = DeepLabV2(num_classes=19)
    assert _count(model.backbone) == 42_500_160
    assert _count(model.classifier) == 1_400_908 == 4 * (2048 * 9 * 19 + 19)
    assert _count(ASPPClassifierV2(2048, 16)) == 1_179_712
    assert _count(model) == 43_901_068
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules()) == 104
    assert [b.conv2.dilation[0] for b in model.backbone.layer3[:3]] == [1, 2, 2]
    assert [b.conv2.dilation[0] for b in model.backbone.layer4] == [2, 4, 4]
    assert [c.dilation[0] for c in model.classifier.branches] == [6, 12, 18, 24]


def test_output_stride_8():
    model = DeepLabV2(num_classes=3, blocks=(1, 1, 1, 1), base_width=8).eval()
    with torch.no_grad():
        feats, logits = model(torch.zeros(1, 3, 65, 129))
        assert feats.shape == (1, 256, 9, 17) and logits.shape == (1, 3, 9, 17)
        assert model.predict(torch.zeros(1, 3, 64, 128)).shape == (1, 3, 64, 128)


def test_imagenet_weights_load_from_a_torchvision_file(tmp_path):
    reference = torchvision.models.resnet101()
    path = tmp_path / "resnet101.pth"
    torch.save(reference.state_dict(), path)
    backbone = ResNetFeatureExtractor()
    load_imagenet_weights(backbone, path)
    assert torch.equal(backbone.layer3[5].conv2.weight, reference.layer3[5].conv2.weight)
    with pytest.raises(CheckpointError, match="ImageNet weights not found"):
        load_imagenet_weights(backbone, tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="does not fit the configured backbone"):
        load_imagenet_weights(ResNetFeatureExtractor(blocks=(1, 1, 1, 1), base_width=8), path)


def test_frozen_bn_keeps_statistics_and_affine_parameters():
    model = DeepLabV2(num_classes=3, blocks=(1, 1, 1, 1), base_width=4, freeze_bn=True).train()
    bn = model.backbone.bn1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 32, 32) + 5.0)
    assert not bn.training and torch.equal(bn.running_mean, before) and not bn.weight.requires_grad
    live = DeepLabV2(num_classes=3, blocks=(1, 1, 1, 1), base_width=4).train()
    live(torch.randn(2, 3, 32, 32) + 5.0)
    assert live.backbone.bn1.training and not torch.equal(live.backbone.bn1.running_mean, before)
