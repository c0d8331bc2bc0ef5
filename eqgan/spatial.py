"""EqGAN-SA's spatially aware generator (Wang et al., CVPR 2022, Sec. 3.1; spec eqgan.md §2.1-2.2).

G samples a random multi-level heatmap per image (:func:`generate_heatmap_multi`: 1 centre at the coarse level, 2
and 4 around it), encodes each level with two convolutions (``hm_conv0_*``, ``hm_conv1_*``) and feeds the result to a
spatial encoding layer (:class:`SEL`) on the input of every synthesis layer and ToRGB:

    SEL(x, m) = x + 0.1 * conv3x3( lrelu_0.2( IN(x) * (1 + gamma(m)) + beta(m) ) ),   gamma, beta: 1 channel

Routing (official ``SynthesisNetwork.forward``): block 4x4 reads level 1 (key ``b8``), 8x8 level 2 (``b16``), 16x16
level 3 (``b32``), blocks >= 32 the 96-channel concatenation of the three. Module names follow genforce/eqgan-sa
(``synthesis.hm_conv0_b8``, ``synthesis.b8.conv0.sel.shared.0``), so official state dicts load key for key. The
SELs act through the input hook of :mod:`common.stylegan2.networks`; with ``use_sel=False`` the heatmap encoders exist
(as officially) but are not run, and the output equals plain StyleGAN2's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.stylegan2.networks import Conv2dLayer, SynthesisNetwork

LEVELS = ("b8", "b16", "b32")  # official keys of the 1-, 2- and 4-centre heatmaps (G blocks 4, 8, 16 read them)
CENTRES = {"b8": 1, "b16": 2, "b32": 4}
HEATMAP_FEATURES = 32  # channels of each encoded level; blocks >= 32 read the 96-channel concatenation
SEL_HIDDEN = 64
SEL_RESIDUAL = 0.1


def generate_heatmap_multi(
    batch: int,
    resolution: int,
    sigma: float | None = None,
    centers: Tensor | None = None,
    eps: float = 0.01,
    device: torch.device | str | None = None,
    l2_delta: Tensor | float | None = None,
    l3_delta: Tensor | float | None = None,
    cur_sigma2: Tensor | float | None = None,
    cur_sigma3: Tensor | float | None = None,
    l2_centers: Tensor | None = None,
    l3_centers: Tensor | None = None,
) -> dict[str, Tensor]:
    """Random multi-level heatmaps {'b8': (B,1,R,R), 'b16': (B,2,R,R), 'b32': (B,4,R,R)} in [eps, 1 + eps].

    Official ``generate_heatmap_multi`` (same draws from torch's global RNG, in the same order, so seeds match):
    coordinates (y, x) on a [-1, 1] grid; level 1: centre ~ N(0, 0.33^2) clamped to +-0.75, one width per batch
    s1 = (U + 1) / 2; levels 2 and 3: centre + U(-0.4, 0.4) / U(-0.8, 0.8) per sample and centre, widths
    (U + 0.1) / 1.4 and (U + 0.1) / 2; exp(-|p - c|^2 / s) + eps. Every argument overrides its draw (the editing
    interface: move ``centers``, keep the deltas and widths).
    """
    if centers is None:
        centers = torch.normal(mean=0, std=0.33, size=(batch, 2)).clamp(-0.75, 0.75)
    centers = torch.as_tensor(centers, dtype=torch.float32)
    if device is not None:
        centers = centers.to(device)
    kw = dict(dtype=centers.dtype, device=centers.device)
    grid = 2 * torch.arange(resolution, **kw) / (resolution - 1) - 1
    coords = torch.stack((grid[:, None].expand(resolution, resolution), grid[None, :].expand(resolution, resolution)))
    coords = coords.unsqueeze(0)  # (1, 2, R, R), (y, x)
    if sigma is None:
        sigma = (torch.rand(1).item() + 1.0) * 0.5
    level1 = torch.exp(-(coords - centers[:, :, None, None]).square().sum(dim=1) / sigma) + eps
    if l2_delta is None:
        l2_delta = (torch.rand(batch, 2, CENTRES["b16"], **kw) - 0.5) * 0.8
    if l3_delta is None:
        l3_delta = (torch.rand(batch, 2, CENTRES["b32"], **kw) - 0.5) * 1.6
    if l2_centers is None:
        l2_centers = l2_delta + centers.unsqueeze(-1)
    if cur_sigma2 is None:
        cur_sigma2 = (torch.rand((batch, 1, 1, CENTRES["b16"]), **kw) + 0.1) / 1.4
    if l3_centers is None:
        l3_centers = l3_delta + centers.unsqueeze(-1)
    if cur_sigma3 is None:
        cur_sigma3 = (torch.rand((batch, 1, 1, CENTRES["b32"]), **kw) + 0.1) / 2

    def gaussians(points: Tensor, width: Tensor | float) -> Tensor:  # points (B, 2, K) -> (B, K, R, R)
        distance = (coords.unsqueeze(-1) - points[:, :, None, None, :]).square().sum(dim=1)
        return (torch.exp(-distance / width) + eps).permute(0, 3, 1, 2)

    return {"b8": level1.unsqueeze(1), "b16": gaussians(l2_centers, cur_sigma2),
            "b32": gaussians(l3_centers, cur_sigma3)}


def heatmap_spec(batch: int, generator: torch.Generator) -> dict[str, Any]:
    """The random draws of :func:`generate_heatmap_multi` (same distributions) from ``generator``, as keyword
    arguments: edit one (e.g. ``centers``) and keep the rest to move content (the paper's interactive editing)."""

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator)

    return dict(
        centers=(torch.randn((batch, 2), generator=generator) * 0.33).clamp(-0.75, 0.75),
        sigma=(float(rand(1)) + 1.0) * 0.5,
        l2_delta=(rand(batch, 2, CENTRES["b16"]) - 0.5) * 0.8,
        l3_delta=(rand(batch, 2, CENTRES["b32"]) - 0.5) * 1.6,
        cur_sigma2=(rand(batch, 1, 1, CENTRES["b16"]) + 0.1) / 1.4,
        cur_sigma3=(rand(batch, 1, 1, CENTRES["b32"]) + 0.1) / 2,
    )


class SEL(nn.Module):
    """Spatial encoding layer (paper Eq. 1-2; official ``SEL``): instance-normalised x modulated by a 1-channel
    scale and shift predicted from the heatmap features, through lrelu and a C->C 3x3 conv, added with factor 0.1."""

    def __init__(self, norm_dim: int, nhidden: int = SEL_HIDDEN, map_dim: int = HEATMAP_FEATURES) -> None:
        super().__init__()
        self.inorm_fn = nn.InstanceNorm2d(norm_dim, affine=False)
        self.shared = nn.Sequential(Conv2dLayer(map_dim, nhidden, kernel_size=3, activation="lrelu"))
        self.sigma = Conv2dLayer(nhidden, 1, kernel_size=3)
        self.mu = Conv2dLayer(nhidden, 1, kernel_size=3)
        self.output = nn.Sequential(nn.LeakyReLU(0.2), Conv2dLayer(norm_dim, norm_dim, kernel_size=3))

    def forward(self, x: Tensor, heatmap_features: Tensor) -> Tensor:
        m = F.interpolate(heatmap_features.to(x.dtype), size=x.shape[2:], mode="bilinear", align_corners=True)
        hidden = self.shared(m)
        return x + self.output(self.inorm_fn(x) * (1 + self.sigma(hidden)) + self.mu(hidden)) * SEL_RESIDUAL


class SpatialSynthesisNetwork(SynthesisNetwork):
    """StyleGAN2's synthesis network with EqGAN-SA's heatmap encoders and (``use_sel``) a SEL on every layer.

    ``forward(ws, heatmap=None, spec=None, return_heatmap=False)``: draws heatmaps when none are given (training,
    G_ema, metrics, generation), with ``spec`` overriding draws of :func:`generate_heatmap_multi`; returns the images,
    or (images, heatmaps) with ``return_heatmap``. Without SEL no heatmap is drawn unless asked for, so the
    torch RNG stream, like the output, is plain StyleGAN2's.
    """

    def __init__(self, *args: Any, use_sel: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_sel = use_sel
        for level in LEVELS:
            setattr(self, f"hm_conv0_{level}",
                    Conv2dLayer(CENTRES[level], HEATMAP_FEATURES // 2, kernel_size=3, activation="lrelu"))
            setattr(self, f"hm_conv1_{level}",
                    Conv2dLayer(HEATMAP_FEATURES // 2, HEATMAP_FEATURES, kernel_size=3, activation="lrelu"))
        if use_sel:
            for res in self.block_resolutions:
                map_dim = HEATMAP_FEATURES * (len(LEVELS) if res > 16 else 1)
                for layer in getattr(self, f"b{res}").modulated_layers():
                    layer.set_input_hook(SEL(layer.affine.out_features, map_dim=map_dim), name="sel")

    def encode(self, heatmap: dict[str, Tensor]) -> dict[str, Tensor]:
        """The SEL input of every block ``b{res}``: its level's 32 features, or the concatenation (blocks >= 32)."""
        features = {}
        for level in LEVELS:
            x = getattr(self, f"hm_conv0_{level}")(heatmap[level])
            features[level] = getattr(self, f"hm_conv1_{level}")(x, gain=np.sqrt(0.5))
        concat = torch.cat([features[level] for level in LEVELS], dim=1)
        return {f"b{res}": features.get(f"b{2 * res}", concat) for res in self.block_resolutions}

    def forward(
        self,
        ws: Tensor | None,
        styles: Sequence[Tensor] | None = None,
        heatmap: dict[str, Tensor] | None = None,
        spec: dict[str, Any] | None = None,
        return_heatmap: bool = False,
        **block_kwargs: Any,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        reference = ws if ws is not None else styles[0]
        if heatmap is None and (self.use_sel or return_heatmap):  # without SEL nothing reads them
            heatmap = generate_heatmap_multi(len(reference), self.img_resolution, device=reference.device,
                                             **(spec or {}))
        layer_inputs = self.encode(heatmap) if self.use_sel else None
        img = super().forward(ws, styles=styles, layer_inputs=layer_inputs, **block_kwargs)
        return (img, heatmap) if return_heatmap else img
