"""ImageNet-inflated initialisation of SlowOnly-R50 from a torchvision ResNet-50 state dict (I3D inflation,
mmaction2 ``ResNet3d._inflate_weights``): every 2D kernel (O, I, kh, kw) becomes (O, I, kt, kh, kw) by repeating it
kt times and dividing by kt, so a clip of identical frames gives the 2D network's features away from the temporal
borders; BatchNorm parameters and statistics are copied; the fc layer is not (the head is new).

CMPL itself trains from scratch (spec §2.3); this is the option users ask for when they have ImageNet weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from cmpl.slowonly import STAGE_BLOCKS, SlowOnly
from common.checkpoint import CheckpointError, read_weights

_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$")
_DOWNSAMPLE = re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$")


def slowonly_key(key: str) -> str | None:
    """The SlowOnly state-dict key of a torchvision ResNet-50 key (None for the fc layer)."""
    if key.startswith("fc."):
        return None
    if key.startswith("conv1."):
        return "stem.0." + key.split(".", 1)[1]
    if key.startswith("bn1."):
        return "stem.1." + key.split(".", 1)[1]
    if match := _BLOCK.match(key):
        stage, block, kind, index, rest = match.groups()
        return f"stages.{int(stage) - 1}.{block}.conv{index}.{0 if kind == 'conv' else 1}.{rest}"
    if match := _DOWNSAMPLE.match(key):
        stage, block, index, rest = match.groups()
        return f"stages.{int(stage) - 1}.{block}.downsample.{index}.{rest}"
    raise CheckpointError(f"'{key}' is not a torchvision ResNet-50 key")


def inflate_into(net: SlowOnly, resnet50: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load an inflated torchvision ResNet-50 into ``net`` (width 64, blocks 3-4-6-3); every key must fit."""
    if net.width != 64 or [len(s) for s in net.stages] != list(STAGE_BLOCKS):
        raise CheckpointError("ImageNet inflation needs the full SlowOnly-R50 (width 64, blocks 3, 4, 6, 3)")
    own = net.state_dict()
    loaded = {}
    for key, value in resnet50.items():
        target = slowonly_key(key)
        if target is None:
            continue
        if target not in own:
            raise CheckpointError(f"{source}: '{key}' has no place in SlowOnly-R50 ('{target}')")
        if value.ndim == 4:  # 2D kernel -> 3D, mean over the repeated temporal taps
            kt = own[target].shape[2]
            value = value.unsqueeze(2).expand(-1, -1, kt, -1, -1) / kt
        if value.shape != own[target].shape:
            raise CheckpointError(f"{source}: '{key}' is {tuple(value.shape)}, SlowOnly's '{target}' is "
                                  f"{tuple(own[target].shape)}")
        loaded[target] = value
    missing = sorted(set(own) - set(loaded))
    if missing:
        raise CheckpointError(f"{source} lacks {len(missing)} ResNet-50 tensors, e.g. {missing[0]}; give a "
                              "torchvision resnet50 state dict")
    net.load_state_dict(loaded)


def load_inflated(net: SlowOnly, path: str | os.PathLike) -> None:
    """:func:`inflate_into` from a file holding a torchvision ResNet-50 state dict (weights-only load)."""
    if not Path(path).is_file():
        raise CheckpointError(f"ImageNet weights '{path}' do not exist; give a torchvision resnet50 state dict (.pth)")
    state = read_weights(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a state dict")
    inflate_into(net, state, str(path))
