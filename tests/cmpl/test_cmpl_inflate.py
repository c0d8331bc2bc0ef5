"""I3D inflation of a torchvision ResNet-50 into SlowOnly-R50: identical frames give the 2D features inside the clip."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cmpl.inflate import inflate_into, load_inflated
from cmpl.slowonly import SlowOnly
from common.checkpoint import CheckpointError


def test_identical_frames_give_the_2d_networks_features(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).eval()
    for module in resnet.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    resnet.double()  # float64 weights: the inflated taps sum back to the 2D kernel to rounding
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.state_dict(), path)
    net = SlowOnly(64).double()
    load_inflated(net, path)
    net.eval()
    image = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        features_2d = torch.nn.Sequential(*list(resnet.children())[:-2])(image)
        clip = image.unsqueeze(2).expand(-1, -1, 19, -1, -1)
        features_3d = net(clip)
    # 9 inflated convs (res4: 6, res5: 3) see +-9 frames: frame 9 of 19 never reaches the temporal zero padding
    torch.testing.assert_close(features_3d[:, :, 9], features_2d, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(features_3d[:, :, 0], features_2d, rtol=1e-4, atol=1e-4)


def test_wrong_networks_and_files_fail_in_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="full SlowOnly-R50"):
        inflate_into(SlowOnly(16), torchvision.models.resnet50(weights=None).state_dict())
    state = torchvision.models.resnet50(weights=None).state_dict()
    del state["layer4.2.bn3.weight"]
    with pytest.raises(CheckpointError, match="lacks 1"):
        inflate_into(SlowOnly(64), state)
    with pytest.raises(CheckpointError, match="not a torchvision ResNet-50 key"):
        inflate_into(SlowOnly(64), {"head.w": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="do not exist"):
        load_inflated(SlowOnly(64), tmp_path / "none.pth")
