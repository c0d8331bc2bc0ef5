"""VolumeGAN's progressive discriminator: a StyleGAN2 'resnet' D with a fromRGB layer at every resolution.

Re-implements ``VolumeGANDiscriminator`` of genforce/volumegan (``models/volumegan_discriminator.py`` at commit 34bca21,
``architecture='resnet'``, ``label_dim=0``) on the shared StyleGAN2 layers (spec ``volumegan.md`` §2.2 the
discriminator, §2.4 progressive growing, §3 parameter counts):

- blocks ``b{res}`` for res = img_resolution ... 8: :class:`~common.stylegan2.networks.DiscriminatorBlock`
  ('resnet': conv 3x3, conv 3x3 with FIR [1,3,3,1] 2x down, 1x1 down skip, both branches * sqrt(0.5));
  channels min(channel_base / res, channel_max);
- the 4x4 head ``b4``: :class:`~common.stylegan2.networks.DiscriminatorEpilogue` (minibatch-std, group 4, 1 channel;
  conv 3x3, fc lrelu, out 1);
- ``fromrgb.b{res}``: a 1x1 lrelu conv from the image at EVERY resolution down to 4 (the official ``input{i}``),
  used by the lod-based fade-in of progressive growing.

Progressive forward (official ``forward``), with ``lod`` = 0 at full resolution and block index ``i`` = the lod at
which block ``b{img_resolution >> i}`` is the first one to run:

- integer ``lod = k``: the image is average-pooled 2x2 ``k`` times, ``fromrgb`` at ``img_resolution >> k`` reads it,
  and only the blocks from that resolution down run (blocks above it are skipped);
- fractional ``lod = k + alpha``: the ``lod = k`` path runs through its first block ``b{img_resolution >> k}``; at the
  next resolution its features are blended with the fromRGB of the once more pooled image,
  ``alpha * fromrgb(pool(img)) + (1 - alpha) * x`` (alpha = lod - floor(lod); alpha -> 1 is the lower resolution).

Found in the official forward: the 4x4 fromRGB (``input{log2(res) - 2}``, here ``fromrgb.b4``) is never used (the lod
loop stops at 8x8), so its 2,048 parameters (at 512 channels) only count, and lods in (max_lod - 1, max_lod) equal
max_lod - 1 (no fade towards 4x4); lods >= max_lod = log2(res) - 2 would feed a full-size feature map to the 4x4 head
and crash, and a negative lod equals lod 0 there; both are refused here. The official
forward also always runs ``input0`` on the full image before overwriting it at lod >= 1 (skipped here).

Not carried over: fp16 blocks (the official recipe's ``num_fp16_res``); label conditioning (VolumeGAN's ``label_dim``
is 0); the 'skip' and 'origin' architectures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.checkpoint import CheckpointError
from common.stylegan2.networks import (
    DEFAULT_FILTER,
    Conv2dLayer,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
)


def _resolutions(img_resolution: int) -> list[int]:
    """img_resolution, img_resolution / 2, ..., 4: the resolutions with a fromRGB (official ``input{i}``, i = index)."""
    log2 = int(math.log2(img_resolution)) if img_resolution > 0 else 0
    if img_resolution < 8 or img_resolution != 2**log2:
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    return [2**k for k in range(log2, 1, -1)]


class ProgressiveDiscriminator(nn.Module):
    """D(img, c, lod) -> logits [N, 1] of images [N, C, res, res]; VolumeGAN's D (spec §2.2), fade-in by ``lod``.

    ``lod`` (a float buffer, 0 = full resolution; the trainer sets it) or the ``lod`` argument picks the input
    resolution img_resolution / 2**floor(lod); see the module docstring. ``c`` is accepted for the shared loss's
    ``D(img, c)`` call and ignored (c_dim 0).
    """

    def __init__(
        self,
        img_resolution: int,
        img_channels: int = 3,
        c_dim: int = 0,
        channel_base: int = 32768,  # official fmaps_base 32 << 10 (--d_fmaps_factor 1.0)
        channel_max: int = 512,
        mbstd_group_size: int = 4,  # --d_mbstd_groups 4
        mbstd_num_channels: int = 1,
        resample_filter: tuple[int, ...] = DEFAULT_FILTER,
        conv_clamp: float | None = None,  # the official recipe uses 256 together with fp16
    ) -> None:
        super().__init__()
        if c_dim != 0:
            raise ValueError(f"VolumeGAN's discriminator is unconditional (label_dim 0), got c_dim={c_dim}")
        resolutions = _resolutions(img_resolution)
        self.img_resolution, self.img_channels, self.c_dim = img_resolution, img_channels, c_dim
        self.block_resolutions = resolutions[:-1]
        channels = {res: min(channel_base // res, channel_max) for res in resolutions}
        self.register_buffer("lod", torch.zeros([]))
        self.fromrgb = nn.ModuleDict(
            {
                f"b{res}": Conv2dLayer(
                    img_channels, channels[res], kernel_size=1, activation="lrelu", conv_clamp=conv_clamp
                )
                for res in resolutions
            }
        )
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res],  # nonzero: the block has no fromrgb of its own, fromrgb.b{res} feeds it
                channels[res],
                channels[res // 2],
                resolution=res,
                img_channels=img_channels,
                first_layer_idx=layer_idx,
                architecture="resnet",
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        self.b4 = DiscriminatorEpilogue(
            channels[4],
            cmap_dim=0,
            resolution=4,
            img_channels=img_channels,
            architecture="resnet",
            mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels,
            conv_clamp=conv_clamp,
        )

    @property
    def max_lod(self) -> int:
        """Lods must lie in [0, max_lod): max_lod = log2(img_resolution) - 2 = the number of blocks above 4x4."""
        return len(self.block_resolutions)

    def forward(self, img: Tensor, c: Tensor | None = None, lod: float | Tensor | None = None) -> Tensor:
        """Logits [N, 1] of ``img`` [N, C, res, res] at ``lod`` (default: the ``lod`` buffer); ``c`` is ignored."""
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"expected images [N, {', '.join(map(str, expected))}], got {list(img.shape)}")
        lod = float(self.lod if lod is None else lod)
        if not 0 <= lod < self.max_lod:
            raise ValueError(f"lod must lie in [0, {self.max_lod}) for resolution {self.img_resolution}, got {lod}")
        x = None
        for cur_lod, res in enumerate(self.block_resolutions):
            if cur_lod <= lod < cur_lod + 1:  # the input resolution: start from the image here
                x = self.fromrgb[f"b{res}"](img)
            elif cur_lod - 1 < lod < cur_lod:  # one below: fade in the lower-resolution fromRGB
                alpha = lod - math.floor(lod)
                x = self.fromrgb[f"b{res}"](img) * alpha + x * (1 - alpha)
            if lod < cur_lod + 1:  # blocks above the input resolution are skipped
                x, _ = getattr(self, f"b{res}")(x, None)
            if lod > cur_lod:  # official: avg_pool2d, not the FIR filter
                img = F.avg_pool2d(img, kernel_size=2, stride=2, padding=0)
        return self.b4(x, None, None)


def _official_key_map(img_resolution: int) -> dict[str, str]:
    """{official VolumeGANDiscriminator ('resnet', label_dim 0) state-dict key: this module's key}."""
    resolutions = _resolutions(img_resolution)
    names = {"lod": "lod"}
    for idx, res in enumerate(resolutions):
        names[f"input{idx}.weight"] = f"fromrgb.b{res}.weight"
        names[f"input{idx}.bias"] = f"fromrgb.b{res}.bias"
        if res > 4:
            for param in ("weight", "bias"):
                names[f"layer{2 * idx}.{param}"] = f"b{res}.conv0.{param}"
                names[f"layer{2 * idx + 1}.{param}"] = f"b{res}.conv1.{param}"
            names[f"layer{2 * idx + 1}.filter"] = f"b{res}.conv1.resample_filter"
            names[f"residual{idx}.weight"] = f"b{res}.skip.weight"
            names[f"residual{idx}.filter"] = f"b{res}.skip.resample_filter"
        else:
            for param in ("weight", "bias"):
                names[f"layer{2 * idx}.{param}"] = f"b4.conv.{param}"
                names[f"layer{2 * idx + 1}.{param}"] = f"b4.fc.{param}"
                names[f"output.{param}"] = f"b4.out.{param}"
    return names


def _derived_filter_keys(img_resolution: int) -> list[str]:
    """This module's resample-filter buffers without an official counterpart (the official 1x1/3x3 layers without
    down-sampling keep no filter); they take the value of the official down-sampling filter."""
    keys = []
    for res in _resolutions(img_resolution):
        keys.append(f"fromrgb.b{res}.resample_filter")
        keys += [f"b{res}.resample_filter", f"b{res}.conv0.resample_filter"] if res > 4 else ["b4.conv.resample_filter"]
    return keys


def map_official_state_dict(official: Mapping[str, Tensor], img_resolution: int) -> dict[str, Tensor]:
    """An official VolumeGAN D state dict (``checkpoint['models']['discriminator']``) -> this module's, strictly.

    The key sets must match exactly: raises :class:`CheckpointError` naming the resolution the ``input{i}`` layers
    imply when it is another one, else the first missing, then the first unexpected key. The result has exactly
    :class:`ProgressiveDiscriminator`'s keys, so it loads with ``load_state_dict(..., strict=True)``. The official
    FIR filter buffers (``layer{2i+1}.filter``, ``residual{i}.filter``) must all be equal; they also fill this
    module's filter buffers that have no official key.
    """
    names = _official_key_map(img_resolution)
    levels = 0
    while f"input{levels}.weight" in official:
        levels += 1
    if levels and levels != len(_resolutions(img_resolution)):
        raise CheckpointError(
            f"official VolumeGAN D state dict: fromRGB layers input0..input{levels - 1} are those of resolution "
            f"{2 ** (levels + 1)}, not {img_resolution}"
        )
    source = f"official VolumeGAN D state dict at resolution {img_resolution}"
    for key in names:
        if key not in official:
            raise CheckpointError(f"{source}: missing key {key!r}")
    for key in official:
        if key not in names:
            raise CheckpointError(f"{source}: unexpected key {key!r}")
    filters = [key for key in names if key.endswith(".filter")]
    reference = official[filters[0]]
    for key in filters[1:]:
        if official[key].shape != reference.shape or not torch.equal(official[key], reference):
            raise CheckpointError(f"official VolumeGAN D state dict: filter {key!r} differs from {filters[0]!r}")
    state = {ours: official[key] for key, ours in names.items()}
    state.update({key: reference.clone() for key in _derived_filter_keys(img_resolution)})
    return state
