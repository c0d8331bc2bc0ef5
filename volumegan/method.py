"""VolumeGAN on the shared StyleGAN2 loop (spec volumegan.md §2.3-§2.4; official ``runners/volumegan_runner.py``,
``runners/losses/volumegan_loss.py``, ``runners/controllers/progress_scheduler.py``).

The official training is StyleGAN2's: non-saturating loss, lazy R1 (gamma 10 every 16 D steps), path length
(weight 2 every 4 G steps, w.r.t. every ws including the structure codes), Adam (0, 0.99) with the lazy-reg
correction, G's EMA, x-flips; no 3D-specific loss and no pose label. What VolumeGAN changes, here:

- the networks (:class:`~volumegan.generator.VolumeGANGenerator`, :class:`~volumegan.discriminator.
  ProgressiveDiscriminator`), built before G_ema is copied;
- style mixing among the texture codes only (:class:`VolumeGANLoss`): cutoff ~ U{L .. num_ws - 1}, L = the
  structure codes, which always come from the first z;
- progressive growing (:meth:`VolumeGAN.before_iteration`): every ``lod_interval`` iterations the lod of G, G_ema
  and D follows :func:`lod_at` of the image count, and both Adam states are cleared when a fade starts or ends.

Deviations, by design (README): on ``--resume`` the lod and the Adam state continue as in the uninterrupted run
(the official runner restarts its lod record at 0 and so clears Adam on resumed runs above lod 1); lazy
regularisation runs on iterations 0, 4, 8, ... (the shared loop) instead of 1, 5, 9, ... (official ``iter % 4 ==
1``, 1-based); fp32 throughout (the official recipe runs most layers in fp16 with conv_clamp 256: clamping kept).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common.config import ConfigError
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape
from volumegan.config import VolumeGANConfig, check_sizes
from volumegan.discriminator import ProgressiveDiscriminator
from volumegan.generator import VolumeGANGenerator


def lod_at(nimg: int, max_lod: int, training_img: float = 750_000, transition_img: float = 750_000) -> float:
    """The official ``ProgressScheduler`` lod after ``nimg`` images: ``max_lod`` for ``training_img`` images,
    then ``transition_img`` images fading to ``max_lod - 1``, and so on down to 0."""
    phase, within = divmod(nimg, training_img + transition_img)
    lod = max_lod - phase
    if transition_img:
        lod -= max(within - training_img, 0) / transition_img
    return float(np.clip(lod, 0.0, max_lod))


def build_volumegan_generator(cfg: VolumeGANConfig, resolution: int, img_channels: int) -> VolumeGANGenerator:
    """G of a resolved config; one line for a resolution or width the renderer cannot take."""
    check_sizes(cfg, resolution)
    vg, g = cfg.volumegan, cfg.G
    field = dict(layers=vg.mlp_layers, hidden=vg.mlp_hidden, out_dim=vg.feature_dim, freqs=vg.pe_freqs,
                 volume=dict(feat_res=vg.volume_res, init_res=vg.volume_init_res,
                             base_channels=vg.volume_base_channels, output_channels=vg.volume_channels),
                 use_volume=vg.feature_volume, bounds=vg.bounds)
    return VolumeGANGenerator(g.z_dim, g.w_dim, resolution, img_channels, g.mapping_layers, nerf_res=vg.nerf_res,
                              field=field, rays=vg.rays(), channel_base=g.channel_base, channel_max=g.channel_max,
                              conv_clamp=None if cfg.train.fp32 else g.conv_clamp)


class VolumeGANLoss(StyleGAN2Loss):
    """StyleGAN2's loss with style mixing restricted to the texture (renderer) codes (official generator
    ``forward``: ``mixing_cutoff = randint(num_nerf_layers, num_layers)``)."""

    def __init__(self, G: nn.Module, D: nn.Module, structure_ws: int, **kwargs: Any) -> None:
        super().__init__(G, D, **kwargs)
        self.structure_ws = structure_ws

    def run_G(self, z: Tensor, c: Tensor, **synthesis_kwargs: Any) -> tuple[Any, Tensor]:
        G = self._G
        ws = G.mapping(z, c)
        if self.style_mixing_prob > 0 and ws.shape[1] > self.structure_ws:
            cutoff = int(torch.randint(self.structure_ws, ws.shape[1], []))
            if float(torch.rand([])) < self.style_mixing_prob:
                mixed = G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
                ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return G.synthesis(ws, **synthesis_kwargs), ws


class VolumeGAN(Method):
    """VolumeGAN's networks, mixing and progressive schedule on the shared loop."""

    name = "volumegan"
    config_class = VolumeGANConfig

    def build_networks(self, cfg: VolumeGANConfig, shape: NetworkShape) -> Networks:
        if shape.c_dim:
            raise ConfigError("VolumeGAN is unconditional (the official label_dim is 0): set data.cond to false")
        d = cfg.D
        D = ProgressiveDiscriminator(shape.resolution, shape.img_channels, 0, d.channel_base, d.channel_max,
                                     d.mbstd_group_size, d.mbstd_num_channels,
                                     conv_clamp=None if cfg.train.fp32 else d.conv_clamp)
        return Networks(G=build_volumegan_generator(cfg, shape.resolution, shape.img_channels), D=D)

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        return VolumeGANLoss(G, D, structure_ws=state.G.synthesis.num_structure_ws, **self.loss_kwargs(state))

    def lod(self, state: LoopState) -> float:
        """The lod in force from ``state.cur_nimg`` (0 without progressive growing)."""
        vg = state.cfg.volumegan
        if not vg.progressive:
            return 0.0
        return lod_at(state.cur_nimg, state.G.synthesis.renderer.max_lod, vg.lod_training_kimg * 1000,
                      vg.lod_transition_kimg * 1000)

    def before_iteration(self, state: LoopState) -> None:
        vg = state.cfg.volumegan
        if state.batch_idx % vg.lod_interval:  # a resumed run restored the lod buffers of its snapshot
            return
        old, new = float(state.D.lod), self.lod(state)
        if vg.reset_optimizer and (math.floor(new) != math.floor(old) or math.ceil(new) != math.ceil(old)):
            for opt in state.optimizers.values():
                opt.state.clear()
        for lod in (state.G.synthesis.renderer.lod, state.G_ema.synthesis.renderer.lod, state.D.lod):
            lod.fill_(new)

    def scalars(self, state: LoopState) -> dict[str, float]:
        return {"Progress/lod": float(state.D.lod)}
