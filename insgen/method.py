"""InsGen as a :class:`common.stylegan2.Method`: D_ema, the two heads and their optimizers, the loss, ada_linear.

What the official ``training/training_loop.py`` adds to StyleGAN2-ADA (spec insgen.md §2):

- D_ema = deep copy of D, parameters moved once per iteration before the phases: D_ema <- m D_ema + (1 - m) D;
- phi_r (official DHead) steps with D's Adam settings, phi_f (GHead) with G's, both with the lazy-regularisation
  correction c = I / (I + 1) on lr and betas (D: I = 16, G: I = 4);
- heads follow D's last-block width (``inplanes``); queues default to int(0.05 N) (x2 with x-flips);
- ``ada_linear``: p = target * cur_kimg / total_kimg, set every ``augment.interval`` iterations.

Snapshots hold D_ema and both heads (queues and pointers are their buffers) next to G, D, G_ema and the pipe.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from common.config import ConfigError
from common.contrastive import momentum_update_
from common.stylegan2.augment import augment_pipe as make_augment_pipe
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape
from common.stylegan2.training import lazy_adam
from insgen.config import InsGenConfig
from insgen.contrastive import InstanceDiscriminationHead, default_queue_size
from insgen.loss import InsGenLoss


class LinearAugmentSchedule:
    """Official ``--ada_linear``: p = target * cur_kimg / total_kimg every ``interval`` iterations (no feedback).

    Same interface as :class:`common.stylegan2.ada.AdaptiveP`, which it replaces in the loop.
    """

    def __init__(self, pipe: nn.Module, target: float, interval: int, total_kimg: float, batch_size: int) -> None:
        self.pipe, self.target, self.interval = pipe, target, interval
        self.total_kimg, self.batch_size = total_kimg, batch_size

    def p_at(self, cur_nimg: int) -> float:
        return self.target * (cur_nimg / 1000) / self.total_kimg

    def accumulate(self, real_logits: Tensor) -> None:
        """No feedback from D's logits."""

    def step(self, batch_idx: int) -> None:
        if batch_idx % self.interval == 0:
            with torch.no_grad():
                self.pipe.p.fill_(self.p_at(batch_idx * self.batch_size))

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Stateless: p is the pipe's buffer and follows from the iteration count."""


def head_channels(cfg: InsGenConfig) -> int:
    """Channels of D's last block output (b8 -> 4x4): min(channel_base / 4, channel_max) of a resolved config."""
    return min(cfg.D.channel_base // 4, cfg.D.channel_max)


def queue_sizes(cfg: InsGenConfig, dataset_len: int) -> tuple[int, int]:
    """(K_r, K_f): the configured sizes, else the official default from the images after subset (before flips)."""
    mirror = cfg.data.mirror
    default = default_queue_size(dataset_len // (2 if mirror else 1), mirror)
    sizes = (cfg.insgen.real_queue_size or default, cfg.insgen.fake_queue_size or default)
    if min(sizes) < 1:
        raise ConfigError(
            f"the default InsGen queue int(0.05 * N) is empty for N = {dataset_len} training images; set "
            f"insgen.real_queue_size and insgen.fake_queue_size (e.g. 64)"
        )
    return sizes


class InsGen(Method):
    """InsGen on the shared loop; with ``insgen.enabled: false`` exactly plain StyleGAN2-ADA (the baseline arm)."""

    name = "insgen"

    config_class = InsGenConfig

    def __init__(self) -> None:
        self.D_ema: nn.Module | None = None

    def build_networks(self, cfg: InsGenConfig, shape: NetworkShape) -> Networks:
        """G and D, plus D_ema = a copy of D (official ``training_loop.py``), part of the model like G_ema."""
        nets = super().build_networks(cfg, shape)
        if cfg.insgen.enabled:
            nets.extra["D_ema"] = copy.deepcopy(nets.D).eval().requires_grad_(False)
        return nets

    def init_networks(self, nets: Networks, source: Networks) -> None:
        """As the official ``--resume``: G, G_ema, D and D_ema (D's weights when the source has no D_ema); the heads
        and their queues start fresh."""
        super().init_networks(nets, source)
        if "D_ema" in nets.extra and "D_ema" not in source.extra:
            nets.extra["D_ema"].load_state_dict(source.D.state_dict())

    def setup(self, state: LoopState) -> None:
        cfg = state.cfg
        ic = cfg.insgen
        if not ic.enabled:
            self.name = "stylegan2-ada"
            return
        view_augment = state.augment_pipe
        if ic.view_pipe is not None:
            view_augment = make_augment_pipe(ic.view_pipe, p=ic.view_p).to(state.device).train()
            view_augment.requires_grad_(False)
            state.modules["view_augment"] = view_augment
        elif view_augment is None:
            raise ConfigError(
                "InsGen draws its two views from the adversarial augment pipe (official), and augment.mode=noaug has "
                "none: use augment.mode=ada or fixed, or set insgen.view_pipe (e.g. bgc) and insgen.view_p"
            )
        self.view_augment = view_augment
        if ic.ada_linear:
            if state.ada is None:
                raise ConfigError("insgen.ada_linear needs augment.mode=ada (it replaces the adaptive p schedule)")
            state.ada = LinearAugmentSchedule(
                state.augment_pipe, cfg.augment.target, cfg.augment.interval, cfg.train.total_kimg, cfg.train.batch
            )

        self.D_ema = state.modules["D_ema"]
        real_size, fake_size = queue_sizes(cfg, len(state.dataset))
        heads = {}
        for name, size in (("real_head", real_size), ("fake_head", fake_size)):
            heads[name] = InstanceDiscriminationHead(
                head_channels(cfg), temperature=ic.temperature, queue_size=size, momentum=ic.momentum
            ).to(state.device)
        self.real_head, self.fake_head = heads["real_head"], heads["fake_head"]
        o = cfg.optim  # phi_r steps with D's settings, phi_f with G's (official training_loop.py)
        self.real_head_opt = lazy_adam(self.real_head.mlp.parameters(), o.d_lr, o.betas, o.eps, o.d_reg_interval)
        self.fake_head_opt = lazy_adam(self.fake_head.mlp.parameters(), o.g_lr, o.betas, o.eps, o.g_reg_interval)
        state.modules.update(real_head=self.real_head, fake_head=self.fake_head)
        state.optimizers.update(real_head=self.real_head_opt, fake_head=self.fake_head_opt)

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        ic = state.cfg.insgen
        if not ic.enabled:
            return super().build_loss(state, G, D)
        return InsGenLoss(
            G,
            D,
            D_ema=self.D_ema,
            real_head=self.real_head,
            fake_head=self.fake_head,
            real_head_opt=self.real_head_opt,
            fake_head_opt=self.fake_head_opt,
            view_augment=self.view_augment,
            weight_real=ic.weight_real,
            weight_fake=ic.weight_fake,
            weight_fake_on_g=0.0 if ic.no_cl_on_g else ic.weight_fake_on_g,
            latent_perturbation=ic.latent_perturbation,
            **self.loss_kwargs(state),
        )

    def before_iteration(self, state: LoopState) -> None:
        if self.D_ema is not None:
            momentum_update_(self.D_ema, state.D, state.cfg.insgen.momentum)

