"""VolumeGAN's generator (spec volumegan.md §2.1, §3; official ``models/volumegan_generator.py``).

    z --mapping--> w, repeated to ws (N, num_ws, w_dim); ws[:, :L] structure codes, ws[:, L:] texture codes
    feature volume V = FeatureVolume(ws[:, 0])                             (N, C_v, R, R, R), the structure
    rays of an image of nerf_res^2 pixels from a camera drawn from the dataset's prior, S coarse depths each
    per point p: [V(p) trilinear, border padding | PE(p)] -> L modulated 1x1 layers (ws[:, i]) -> sigma, feature
    S importance depths from the coarse compositing weights, the same field on them, all 2S sorted by depth
    feature map F = sum_i w_i f_i                                          (N, C_f, nerf_res, nerf_res)
    image = NeuralRenderer(F, ws[:, L:])   1x1 modulated convs, FIR 2x upsampling, skip RGB from F[:, :3]

The modulated layers are ``common.stylegan2`` layers with kernel 1: the field's MLP is a :class:`SynthesisLayer`
without noise on the points laid out as an (N, C, P, 1) map (the official ``ModulateConvLayer``), the renderer's
convolutions are :class:`SynthesisLayer` / :class:`ToRGBLayer` (StyleGAN2's, demodulated, with noise).
The structure codes alone determine density and depth (a texture swap cannot change them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.ops import setup_filter, upsample2d
from common.stylegan2.networks import FullyConnectedLayer, MappingNetwork, SynthesisLayer, ToRGBLayer
from volumegan.rendering import (
    FFHQ_BOUNDS,
    RaySettings,
    Rendered,
    compositing_weights,
    importance_rays,
    interpolate_feature,
    sample_rays,
)


class FeatureVolume(nn.Module):
    """The structural representation (official ``FeatureVolume``): a learnable template of ones (base_channels @
    init_res^3), stages of [nearest 2x 3D upsampling (not the first), Conv3d 3x3x3 (PyTorch's default init, bias),
    instance norm without affine (eps 1e-8), x * scale + shift, LeakyReLU 0.2]; channels halve per stage down to
    ``output_channels``. Every stage's scale and shift come from ONE ``nn.Linear(w_dim, 2 sum(channels))`` of the
    first structure code (kaiming-leaky init x 0.25); the scale is used as is (not 1 + scale). The output has
    max(base_channels / 2^(stages - 1), output_channels) channels (the official ``output_channels`` is a floor)."""

    def __init__(self, w_dim: int = 512, feat_res: int = 32, init_res: int = 4, base_channels: int = 256,
                 output_channels: int = 32) -> None:
        super().__init__()
        stages = int(math.log2(feat_res // init_res)) + 1
        self.const = nn.Parameter(torch.ones(1, base_channels, init_res, init_res, init_res))
        self.stage_channels: list[int] = []
        inplanes = outplanes = base_channels
        for i in range(stages):
            setattr(self, f"layer{i}", nn.Conv3d(inplanes, outplanes, 3, padding=1))
            self.stage_channels.append(outplanes)
            inplanes, outplanes = outplanes, max(outplanes // 2, output_channels)
        self.mapping_network = nn.Linear(w_dim, 2 * sum(self.stage_channels))
        nn.init.kaiming_normal_(self.mapping_network.weight, a=0.2, mode="fan_in", nonlinearity="leaky_relu")
        with torch.no_grad():
            self.mapping_network.weight.mul_(0.25)

    def forward(self, w: Tensor) -> Tensor:
        """(N, w_dim) -> (N, C, D, H, W)."""
        scales, shifts = self.mapping_network(w).chunk(2, dim=1)
        x = self.const.expand(len(w), -1, -1, -1, -1)
        start = 0
        for i, channels in enumerate(self.stage_channels):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = getattr(self, f"layer{i}")(x)
            x = x - x.mean(dim=(2, 3, 4), keepdim=True)
            x = x / (x.square().mean(dim=(2, 3, 4), keepdim=True) + 1e-8).sqrt()
            scale = scales[:, start : start + channels, None, None, None]
            shift = shifts[:, start : start + channels, None, None, None]
            x = F.leaky_relu(x * scale + shift, 0.2)
            start += channels
        return x


def positional_encoding(points: Tensor, freqs: int) -> Tensor:
    """NeRF's encoding (official ``Embedder``, include_input, log sampling): [p, sin(2^0 p), cos(2^0 p), ...,
    sin(2^(F-1) p), cos(2^(F-1) p)] -> 3 + 6 F dims (63 at F = 10)."""
    out = [points]
    for k in range(freqs):
        out += [torch.sin(points * 2.0**k), torch.cos(points * 2.0**k)]
    return torch.cat(out, dim=-1)


class FeatureField(nn.Module):
    """The generative feature field (official ``NeRFSynthesisNetwork``, no background net, no view directions):
    per point [volume feature | PE] -> ``len(mlp)`` modulated 1x1 layers (lrelu, demodulated, equalised lr, no
    noise; layer i modulated by structure code i) -> density (linear, 1) and feature (linear, ``out_dim``).
    ``use_volume=False`` is the tiny preset's no-volume ablation (the MLP sees the encoding only)."""

    def __init__(self, w_dim: int = 512, layers: int = 4, hidden: int = 256, out_dim: int = 512, freqs: int = 10,
                 volume: dict[str, int] | None = None, use_volume: bool = True,
                 bounds: Sequence[Sequence[float]] = FFHQ_BOUNDS) -> None:
        super().__init__()
        self.freqs, self.use_volume = freqs, use_volume
        self.feature_volume = FeatureVolume(w_dim, **(volume or {})) if use_volume else None
        in_dim = 3 + 6 * freqs + (self.feature_volume.stage_channels[-1] if use_volume else 0)
        self.mlp = nn.ModuleList(
            SynthesisLayer(in_dim if i == 0 else hidden, hidden, w_dim, resolution=1, kernel_size=1, use_noise=False)
            for i in range(layers))
        self.density = FullyConnectedLayer(hidden, 1)
        self.feature = FullyConnectedLayer(hidden, out_dim)
        self.register_buffer("bounds", torch.tensor(bounds, dtype=torch.float32))

    def forward(self, ws: Tensor, points: Tensor, volume: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ws (N, layers, w_dim), points (N, ..., 3) -> sigma (N, ..., 1), feature (N, ..., out_dim); ``volume``:
        this batch's feature volume when already computed."""
        n, lead = len(points), points.shape[1:-1]
        flat = points.reshape(n, -1, 3)
        x = positional_encoding(flat, self.freqs).transpose(1, 2)  # (N, 3 + 6F, P)
        if self.use_volume:
            volume = self.feature_volume(ws[:, 0]) if volume is None else volume
            x = torch.cat([interpolate_feature(flat, volume, self.bounds), x], dim=1)
        # the 1x1 layers see the points as an (N, C, rays, samples) image (the official: (N, C, P, 1); the same
        # values, a layout CPU convolutions run faster)
        x = x.reshape(n, x.shape[1], -1, lead[-1] if len(lead) > 1 else 1)
        for i, layer in enumerate(self.mlp):
            x = layer(x, ws[:, i], fused_modconv=False)
        x = x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])
        sigma, feature = self.density(x), self.feature(x)
        return sigma.reshape(n, *lead, 1), feature.reshape(n, *lead, -1)


class RendererBlock(nn.Module):
    """One resolution of the neural renderer: conv0 (1x1, FIR 2x up), conv1 (1x1), torgb (1x1, no demod)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, kernel_size=1, up=2,
                                    conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, kernel_size=1,
                                    conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)


class NeuralRenderer(nn.Module):
    """Feature map (N, C, r, r) -> image (official ``SynthesisNetwork``, 'skip', rgb_init_res_out False): the
    base image is the feature map's first 3 channels; per resolution 2r .. img_resolution a
    :class:`RendererBlock` and image = torgb + FIR-upsampled previous image. Channels min(channel_base / res,
    channel_max). Texture codes: conv0 of block k takes ws[2k - 1], conv1 ws[2k], torgb ws[2k + 1] (ws[0] unused).

    Progressive growing (official lod): ``lod`` = 0 is the full resolution, ``lod`` = log2(img_resolution / r)
    the raw 3 channels; blocks above the current resolution are skipped, a fractional lod blends the new block's
    image with the nearest-upsampled previous one (alpha = ceil(lod) - lod), and the result is nearest-upsampled
    to ``img_resolution``."""

    def __init__(self, nerf_res: int, img_resolution: int, w_dim: int, img_channels: int = 3,
                 channel_base: int = 32768, channel_max: int = 512, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.nerf_res, self.img_resolution, self.img_channels = nerf_res, img_resolution, img_channels
        self.block_resolutions = [nerf_res * 2**k for k in range(1, int(math.log2(img_resolution // nerf_res)) + 1)]
        self.max_lod = len(self.block_resolutions)
        self.in_channels = min(channel_base // nerf_res, channel_max)
        for res in self.block_resolutions:
            block = RendererBlock(min(channel_base // (res // 2), channel_max), min(channel_base // res, channel_max),
                                  w_dim, res, img_channels, conv_clamp)
            setattr(self, f"b{res}", block)
        self.num_ws = 2 + 2 * len(self.block_resolutions)
        self.register_buffer("lod", torch.zeros(()))
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, x: Tensor, ws: Tensor, noise_mode: str = "random", lod: float | None = None) -> Tensor:
        lod = float(self.lod) if lod is None else lod
        image = cur_image = x[:, : self.img_channels]
        for k, res in enumerate([self.nerf_res, *self.block_resolutions]):
            cur_lod = self.max_lod - k
            if k > 0 and lod < cur_lod + 1:
                block = getattr(self, f"b{res}")
                x = block.conv0(x, ws[:, 2 * k - 1], noise_mode=noise_mode)
                x = block.conv1(x, ws[:, 2 * k], noise_mode=noise_mode)
                cur_image = block.torgb(x, ws[:, 2 * k + 1]) + upsample2d(cur_image, self.resample_filter)
            if cur_lod - 1 < lod <= cur_lod:
                image = cur_image
            elif cur_lod < lod < cur_lod + 1:
                alpha = math.ceil(lod) - lod
                image = cur_image * alpha + F.interpolate(image, scale_factor=2, mode="nearest") * (1 - alpha)
            elif lod >= cur_lod + 1:
                image = F.interpolate(image, scale_factor=2, mode="nearest")
        return image


@dataclass
class Render:
    """What one render gives: the image and the raw NeRF outputs at nerf_res (feature map (N, C, r, r), expected
    depth and opacity (N, 1, r, r)) and the cameras (N, 1)."""

    image: Tensor
    feature_map: Tensor
    depth: Tensor
    opacity: Tensor
    yaw: Tensor
    pitch: Tensor


class VolumeSynthesis(nn.Module):
    """ws -> image: the feature field rendered at ``nerf_res`` from a camera of the prior, then the neural
    renderer (official ``nerf_synthesis`` + ``synthesis``); ``G.synthesis`` in the shared loop."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int = 3, nerf_res: int = 32,
                 field: dict[str, Any] | None = None, rays: RaySettings | None = None, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.nerf_res = w_dim, img_resolution, nerf_res
        self.field = FeatureField(w_dim, **(field or {}))
        self.renderer = NeuralRenderer(nerf_res, img_resolution, w_dim, img_channels, channel_base, channel_max,
                                       conv_clamp)
        feature_dim = self.field.feature.out_features
        if feature_dim != self.renderer.in_channels:
            raise ValueError(f"the field's features ({feature_dim}) must match the renderer's input channels "
                             f"min(channel_base / nerf_res, channel_max) = {self.renderer.in_channels}")
        self.rays = rays or RaySettings()
        self.num_structure_ws = len(self.field.mlp)
        self.num_ws = self.num_structure_ws + self.renderer.num_ws

    def nerf(self, ws: Tensor, yaw: Tensor | None = None, pitch: Tensor | None = None, **ray_overrides: Any
             ) -> tuple[Rendered, Tensor, Tensor]:
        """The NeRF branch (official ``nerf_synthesis``): the composited features (N, r, r, C), depth and opacity
        (the weights of the 2S depth-sorted samples), and the cameras' yaw and pitch (N, 1). ``ray_overrides``
        (e.g. ``perturb='none'``, ``num_steps=36``) hold for this call only; ``yaw``/``pitch`` (N, 1) fix the
        cameras."""
        settings = self.rays.replace(**ray_overrides) if ray_overrides else self.rays
        structure = ws[:, : self.num_structure_ws]
        volume = self.field.feature_volume(structure[:, 0]) if self.field.use_volume else None
        coarse = sample_rays(len(ws), self.nerf_res, settings, yaw, pitch, device=ws.device)
        sigma_c, feature_c = self.field(structure, coarse.points, volume)
        fine = importance_rays(coarse, compositing_weights(sigma_c, coarse.depths), settings.num_steps)
        sigma_f, feature_f = self.field(structure, fine.points, volume)
        # all 2S samples sorted by depth (official: concatenated fine + coarse, sorted, composited); the weights go
        # back to the unsorted samples so that the wide features need no gather
        depths, order = torch.cat([fine.depths, coarse.depths], dim=-2).sort(dim=-2)
        weights = compositing_weights(torch.cat([sigma_f, sigma_c], dim=-2).gather(-2, order), depths)
        unsorted = torch.empty_like(weights).scatter_(-2, order, weights)
        steps = fine.depths.shape[-2]
        values = (unsorted[..., :steps, :] * feature_f).sum(dim=-2) + (unsorted[..., steps:, :] * feature_c).sum(dim=-2)
        out = Rendered(values, (weights * depths).sum(dim=-2), weights, weights.sum(dim=-2))
        return out, coarse.yaw, coarse.pitch

    def render(self, ws: Tensor, noise_mode: str = "random", yaw: Tensor | None = None,
               pitch: Tensor | None = None, **ray_overrides: Any) -> Render:
        """Everything of one render: :meth:`nerf`, then the neural renderer on the texture codes."""
        out, yaw, pitch = self.nerf(ws, yaw, pitch, **ray_overrides)
        feature_map = out.values.permute(0, 3, 1, 2)
        image = self.renderer(feature_map, ws[:, self.num_structure_ws :], noise_mode=noise_mode)
        return Render(image, feature_map, out.depth.permute(0, 3, 1, 2), out.opacity.permute(0, 3, 1, 2), yaw, pitch)

    def forward(self, ws: Tensor, noise_mode: str = "random", **kwargs: Any) -> Tensor:
        return self.render(ws, noise_mode=noise_mode, **kwargs).image


class VolumeGANGenerator(nn.Module):
    """G(z, c) = synthesis(mapping(z)): StyleGAN2's mapping network (8 layers, lr x 0.01, w_avg decay 0.995,
    truncation on the first ``truncation_cutoff`` ws) and :class:`VolumeSynthesis`; unconditional (c_dim 0)."""

    def __init__(self, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 256, img_channels: int = 3,
                 mapping_layers: int = 8, mapping_features: int | None = None, **synthesis_kwargs: Any) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, 0, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = VolumeSynthesis(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, 0, w_dim, num_ws=self.num_ws, num_layers=mapping_layers,
                                      layer_features=mapping_features)

    def forward(self, z: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, **synthesis_kwargs: Any) -> Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

