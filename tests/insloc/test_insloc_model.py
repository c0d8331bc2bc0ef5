"""InsLoc's encoder: the official parameter counts (spec §3, §9) and RoI features equal to torchvision's RoIAlign of
the box on every level."""

from __future__ import annotations

import torch
from torchvision.ops import roi_align

from insloc.model import STRIDES, InsLocFPN


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_of_the_official_fpn_model():
    with torch.device("meta"):
        model = InsLocFPN()
    assert _count(model.backbone) == 23_508_032 and _count(model.neck) == 3_346_432
    assert _count(model.head) == 16_388_224 and _count(model.head.convs) == 2_361_344
    assert sum(_count(fc) for fc in model.head.fcs) == 13_895_680 and _count(model.head.projection) == 131_200
    assert _count(model) == 43_242_688  # the query side; the key encoder is a copy (86,485,376 in all)


def test_every_level_pools_its_own_box_with_aligned_roi_align_and_one_shared_head():
    torch.manual_seed(0)
    model = InsLocFPN(fpn_channels=32, fc=64, dim=16).eval()
    images = torch.randn(2, 3, 128, 128)
    boxes = [torch.tensor([[8.0, 16.0, 100.0, 90.0], [0.0, 0.0, 128.0, 128.0]]) + i for i in range(4)]
    pooled = []
    model.head.register_forward_pre_hook(lambda _, args: pooled.append(args[0]))
    with torch.no_grad():
        out = model(images, boxes)
        features = model.features(images)
    assert out.shape == (4, 2, 16) and torch.allclose(out.norm(dim=2), torch.ones(4, 2))
    assert [f.shape[-1] for f in features] == [128 // s for s in STRIDES]
    for level, stride in enumerate(STRIDES):
        per_image = [boxes[level][:1], boxes[level][1:]]  # one box per image
        expected = roi_align(features[level], per_image, 7, 1 / stride, 0, aligned=True)
        assert torch.equal(pooled[level], expected)


def test_a_stem_without_max_pooling_halves_the_strides_and_roi_align_follows():
    torch.manual_seed(0)
    model = InsLocFPN(fpn_channels=16, roi_size=4, head_convs=2, fc=32, dim=8, block="basic", layers=(1, 1, 1, 1),
                      width=8, stem_pool=False).eval()
    images, box = torch.randn(1, 3, 64, 64), torch.tensor([[8.0, 12.0, 40.0, 56.0]])
    pooled = []
    model.head.register_forward_pre_hook(lambda _, args: pooled.append(args[0]))
    with torch.no_grad():
        model(images, [box] * 4)
        features = model.features(images)
    assert model.backbone.strides == (2, 4, 8, 16) and [f.shape[-1] for f in features] == [32, 16, 8, 4]
    for level, stride in enumerate(model.backbone.strides):
        assert torch.equal(pooled[level], roi_align(features[level], [box], 4, 1 / stride, 0, aligned=True))


def test_the_trunk_is_torchvisions_resnet50_and_smaller_settings_build():
    from torchvision.models import resnet50

    from insloc.model import ResNet

    ours, reference = ResNet().state_dict(), resnet50().state_dict()
    assert list(ours) == [k for k in reference if not k.startswith("fc.")]
    assert all(ours[k].shape == reference[k].shape for k in ours)
    tiny = InsLocFPN(fpn_channels=32, fc=128, dim=64, block="basic", layers=(1, 1, 1, 1), width=16)
    assert tiny.backbone.out_channels == [16, 32, 64, 128]
    assert tiny(torch.randn(2, 3, 64, 64), [torch.tensor([[0.0, 0.0, 40.0, 50.0]] * 2)] * 4).shape == (4, 2, 64)


def test_head_init_is_the_officials():
    torch.manual_seed(0)
    head = InsLocFPN().head
    conv = head.convs[0].weight
    assert abs(float(conv.std()) - (2 / (256 * 9)) ** 0.5) < 0.002  # kaiming normal, fan_out (mmcv ConvModule)
    assert abs(float(head.projection.weight.std()) - 0.01) < 0.001 and float(head.fcs[0].bias.abs().sum()) == 0
