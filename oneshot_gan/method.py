"""GenDA and its baselines as one :class:`common.stylegan2.Method` of the shared loop (``genda.method`` picks).

- ``genda``: G = frozen synthesis o adaptor o truncation o frozen mapping (``oneshot_gan/genda.py``); D = frozen
  source D up to its hidden fc + a new linear head. Only the adaptor (G phases) and the head (D phases) train;
  every other parameter keeps ``requires_grad=False`` and ``grad is None``.
- ``finetune`` (TGAN) / ``freezed`` (FreezeD, ``D.freeze_layers``): plain G and D, everything (not frozen) trains.
- ``ewc``: as ``finetune`` plus the EWC penalty on G (``oneshot_gan/baselines.py``); theta_S and the Fisher are an
  extra module ``ewc``, estimated when the source is loaded and saved in every snapshot.

All methods start from the source's ``G_ema`` (the generator its samples come from) in both G and G_ema, and from its
D, as CDC's code starts from ``g_ema``; optimisers and counters start fresh (``train.init_from``).
"""

from __future__ import annotations

import torch
from torch import nn

from common.checkpoint import CheckpointError, load_module_state
from common.config import ConfigError
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape
from oneshot_gan.baselines import EWCAnchor, EWCLoss
from oneshot_gan.config import GenDAConfig
from oneshot_gan.genda import AdaptedMapping, AttributeAdaptor, AttributeClassifier


class GenDA(Method):
    """One-shot domain adaptation on the shared StyleGAN2-ADA loop; the config's ``genda.method`` picks the arm."""

    name = "genda"
    config_class = GenDAConfig

    def __init__(self) -> None:
        self.cfg: GenDAConfig | None = None

    def build_networks(self, cfg: GenDAConfig, shape: NetworkShape) -> Networks:
        self.cfg = cfg
        nets = super().build_networks(cfg, shape)
        if cfg.genda.method == "genda":
            G = nets.G
            adaptor = AttributeAdaptor(G.w_dim, G.num_ws, cfg.genda.adaptor)
            G.mapping = AdaptedMapping(G.mapping, adaptor, cfg.genda.psi_train)
            nets.D = AttributeClassifier(nets.D)
        elif cfg.genda.method == "ewc":
            nets.extra["ewc"] = EWCAnchor(nets.G)
        return nets

    def init_networks(self, nets: Networks, source: Networks) -> None:
        """G and G_ema <- the source's G_ema, D (GenDA: D's backbone) <- its D; GenDA's adaptor and head keep their
        init (identity, and a fresh head). EWC then estimates its Fisher with the source G and D."""
        where = f"train.init_from {source.source}"
        pretrained_G = source.G_ema if source.G_ema is not None else source.G
        _check_source(nets.G, pretrained_G, where)
        genda = isinstance(nets.D, AttributeClassifier)
        for target in (nets.G, nets.G_ema):
            mapping = target.mapping.base if genda else target.mapping
            load_module_state(mapping, pretrained_G.mapping.state_dict(), "G.mapping", where)
            load_module_state(target.synthesis, pretrained_G.synthesis.state_dict(), "G.synthesis", where)
        load_module_state(nets.D.backbone if genda else nets.D, source.D.state_dict(), "D", where)
        if "ewc" in nets.extra:
            cfg = self.cfg
            with torch.random.fork_rng(devices=[]):
                nets.extra["ewc"].estimate(nets.G, nets.D, cfg.genda.fisher_batches, cfg.train.batch_gpu,
                                           seed=cfg.seed)

    def setup(self, state: LoopState) -> None:
        if state.cfg.train.init_from is None:
            raise ConfigError("train.init_from is not set: GenDA and its baselines adapt a pretrained source model; "
                              "pass --source PATH (a project snapshot or an official StyleGAN2-ADA .pkl)")

    def trainable_parameters(self, state: LoopState, network: str) -> list[nn.Parameter]:
        if not isinstance(state.D, AttributeClassifier):  # the baselines: everything the config does not freeze
            return super().trainable_parameters(state, network)
        if network == "G":
            return list(state.G.mapping.adaptor.parameters())
        params = list(state.D.head.parameters())
        if state.cfg.genda.tune_epilogue:
            params += list(state.D.backbone.b4.fc.parameters())
        return params

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        if "ewc" in state.modules:
            return EWCLoss(G, D, state.modules["ewc"], state.cfg.genda.ewc_lambda, **self.loss_kwargs(state))
        return super().build_loss(state, G, D)


def _check_source(G: nn.Module, source_G: nn.Module, where: str) -> None:
    """One line when the source generator is not the architecture the config builds (before the key listing)."""
    ours = (G.img_resolution, G.img_channels, G.z_dim, G.w_dim, G.c_dim)
    theirs = tuple(getattr(source_G, k, None) for k in ("img_resolution", "img_channels", "z_dim", "w_dim", "c_dim"))
    if ours != theirs:
        raise CheckpointError(
            f"{where}: the source G is (resolution, channels, z_dim, w_dim, c_dim) = {theirs}, this config builds "
            f"{ours}; set data.resolution and G to the source's (configs: paper256 for a 256 px FFHQ source)"
        )
