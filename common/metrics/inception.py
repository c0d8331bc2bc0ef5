"""The FID Inception-v3 (TF ``inception-2015-12-05``) as a plain ``nn.Module`` with torchvision's names.

Layout: torchvision's ``Inception3(num_classes=1008, aux_logits=False)`` with the FID patches that pytorch-fid
applies (``src/pytorch_fid/inception.py``, v0.3.0) and that NVIDIA's TorchScript detector contains
(metrics.md §2): the pool branch of Mixed_5b..5d, Mixed_6b..6e and Mixed_7b is a 3x3/s1/p1 average pool with
``count_include_pad=False`` (TF semantics), the pool branch of Mixed_7c is a 3x3 MAX pool, and every conv is
conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU. Its ``state_dict`` therefore loads pytorch-fid's published file
``pt_inception-2015-12-05-6726825d.pth`` unchanged; :func:`nvidia_to_torchvision` maps NVIDIA's
``inception-2015-12-05.pt`` TorchScript onto the same names.

Inputs of :meth:`FIDInceptionV3.forward` are already resized and normalised (see ``common.metrics.resize``);
the output is the 2048-d pool3 feature. :meth:`FIDInceptionV3.logits` gives the 1008-way logits, without the
bias for the Inception Score (stylegan2-ada-pytorch ``metrics/inception_score.py``: ``no_output_bias=True``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURE_DIM = 2048
NUM_CLASSES = 1008  # TF's 1000 ImageNet classes + 8 unused outputs, as in the 2015-12-05 graph
INPUT_SIZE = 299
BN_EPS = 1e-3


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; the names ``conv``/``bn`` are torchvision's."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _tf_avg_pool(x: Tensor) -> Tensor:
    # TF's SAME average pool divides by the number of valid (unpadded) inputs
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b..5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | TF avg-pool-1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], dim=1)


class InceptionB(nn.Module):
    """35->17 reduction (Mixed_6a): 3x3/s2 | 1x1-3x3-3x3/s2 | max-pool/s2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class InceptionC(nn.Module):
    """17x17 block (Mixed_6b..6e) with factorised 7x7 convolutions and the TF avg-pool branch."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_tf_avg_pool(x))], dim=1)


class InceptionD(nn.Module):
    """17->8 reduction (Mixed_7a): 1x1-3x3/s2 | 1x1-1x7-7x1-3x3/s2 | max-pool/s2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8x8 block (Mixed_7b: TF avg-pool branch; Mixed_7c: MAX-pool branch, the FID graph's quirk)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _tf_avg_pool(x) if self.pool == "avg" else _max_pool_same(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(pooled),
        ], dim=1)


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the TF FID graph: ``(N, 3, 299, 299)`` normalised to [-1, 1] -> ``(N, 2048)`` pool3.

    Weights are random (PyTorch's default init) until a state dict is loaded; see ``common.metrics.weights``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # the 8x8 average pool of the TF graph

    def logits(self, features: Tensor, output_bias: bool = True) -> Tensor:
        """1008-way logits of pool3 ``features``; ``output_bias=False`` is the Inception Score's convention."""
        return F.linear(features, self.fc.weight, self.fc.bias if output_bias else None)


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` whose ``BasicConv2d`` layers are one biased conv + ReLU (BN folded in).

    Eval-mode BN is affine: y = gamma (conv(x) - mean) / sqrt(var + eps) + beta, so it folds exactly into the conv:
    w' = w gamma / sqrt(var + eps), b' = beta - mean gamma / sqrt(var + eps). The copy's state dict no longer
    matches the weight files; keep ``net`` for loading and this copy for feature extraction.
    """
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        if isinstance(module, BasicConv2d):
            conv, bn = module.conv, module.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               bias=True)
            with torch.no_grad():
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                folded.bias.copy_(bn.bias - bn.running_mean * scale)
            module.conv, module.bn = folded, nn.Identity()
    return fused.requires_grad_(False)


# --- NVIDIA TorchScript names (metrics.md §2.1) -> torchvision names ------------------------------------------------
_TRUNK = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
          "conv_4": "Conv2d_4a_3x3"}
_MIXED = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c"]
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3",
          "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}
_BLOCK_KIND = "AAABCCCCDEE"


def nvidia_conv_names() -> dict[str, str]:
    """NVIDIA conv prefix (``layers.mixed_4.tower_1.conv_2``) -> torchvision prefix (``Mixed_6b.branch7x7dbl_3``)."""
    names = {f"layers.{k}": v for k, v in _TRUNK.items()}
    for i, (mixed, kind) in enumerate(zip(_MIXED, _BLOCK_KIND)):
        block = "layers.mixed" if i == 0 else f"layers.mixed_{i}"
        names.update({f"{block}.{k}": f"{mixed}.{v}" for k, v in _BRANCHES[kind].items()})
    return names


def nvidia_to_torchvision(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename NVIDIA's TorchScript state dict (conv ``weight``; BN ``beta``, ``mean``, ``var``, no gamma) to ours.

    The TF graph's batch norm has no scale, so gamma = 1 and ``num_batches_tracked`` = 0. Raises ``KeyError``
    naming the first key that does not fit the documented layout.
    """
    out: dict[str, Tensor] = {}
    used = {"output.weight", "output.bias"}
    for nv, tv in nvidia_conv_names().items():
        used.update(f"{nv}.{suffix}" for suffix in ("weight", "beta", "mean", "var"))
        out[f"{tv}.conv.weight"] = state[f"{nv}.weight"]
        out[f"{tv}.bn.bias"] = state[f"{nv}.beta"]
        out[f"{tv}.bn.running_mean"] = state[f"{nv}.mean"]
        out[f"{tv}.bn.running_var"] = state[f"{nv}.var"]
        out[f"{tv}.bn.weight"] = torch.ones_like(state[f"{nv}.beta"])
        out[f"{tv}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    out["fc.weight"], out["fc.bias"] = state["output.weight"], state["output.bias"]
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise KeyError(f"entries that the documented TorchScript layout does not have: {unexpected[:5]}")
    return out
