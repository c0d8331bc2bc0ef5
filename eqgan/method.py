"""EqGAN-SA as a :class:`common.stylegan2.Method`: a spatially aware G, the alignment loss, DI logged.

What genforce/eqgan-sa adds to StyleGAN2-ADA (spec eqgan.md §2): G's synthesis network draws multi-level heatmaps and
encodes them with SELs (:mod:`eqgan.spatial`, built here before the loop copies G_ema, so G_ema draws its own
heatmaps for metrics and generation), and Gmain adds L_align between D's Grad-CAM and those heatmaps
(:mod:`eqgan.align`). D and its objective are StyleGAN2's. A loss-side method: it composes with D-side methods
(``methods: [eqgan, dynamicd]``) and ADA, not with InsGen (both define the loss).
"""

from __future__ import annotations

from torch import nn

from common.config import ConfigError
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.legacy import PersistentStub
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape
from common.stylegan2.networks import Generator
from eqgan.align import CAM_FEATURES, EqGANLoss
from eqgan.config import EqGANConfig
from eqgan.spatial import LEVELS, SpatialSynthesisNetwork


class EqGANSA(Method):
    """EqGAN-SA on the shared loop; ``use_sel`` and ``align_loss`` off is the StyleGAN2 baseline row (official
    structure: the heatmap encoders exist, unused)."""

    name = "eqgan"

    config_class = EqGANConfig

    def __init__(self) -> None:
        self.scores: list[tuple[float, float]] = []  # (mean D(real), mean D(fake)) of each Dmain since the last tick

    def build_networks(self, cfg: EqGANConfig, shape: NetworkShape) -> Networks:
        G = build_generator(cfg, shape.resolution, shape.img_channels, shape.c_dim,
                            synthesis_class=SpatialSynthesisNetwork, use_sel=cfg.eqgan.use_sel)
        D = build_discriminator(cfg, shape.resolution, shape.img_channels, shape.c_dim)
        missing = [level for level in cfg.eqgan.levels if CAM_FEATURES[level] not in D.feature_names()]
        if cfg.eqgan.align_loss and missing:
            raise ConfigError(
                f"EqGAN-SA aligns D's block outputs at 4x4, 8x8 and 16x16 (levels b8, b16, b32); at {shape.resolution} "
                f"px D has no {', '.join(missing)} output: use images of >= 32 px, or set eqgan.levels to "
                f"{[lv for lv in cfg.eqgan.levels if lv not in missing]}"
            )
        return Networks(G=G, D=D)

    def build_official(self, name: str, stub: PersistentStub) -> nn.Module | None:
        """The official G (``use_sel`` next to the usual kwargs, unused ``config_kwargs``) as ours; D is plain."""
        if stub.class_name != "Generator":
            return None
        kwargs = stub.init_kwargs
        use_sel = bool(kwargs.pop("use_sel", False))
        kwargs.pop("config_kwargs", None)
        synthesis = {**(kwargs.pop("synthesis_kwargs", None) or {}), "use_sel": use_sel}
        return Generator(**kwargs, synthesis_kwargs=synthesis, synthesis_class=SpatialSynthesisNetwork)

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        ec = state.cfg.eqgan
        return EqGANLoss(G, D, align_loss=ec.align_loss, align_thres=ec.align_thres,
                         level_weights=dict(zip(LEVELS, ec.level_weights)), levels=tuple(ec.levels),
                         **self.loss_kwargs(state))

    def after_iteration(self, state: LoopState) -> None:
        stats = state.loss.stats
        if "Loss/scores/real" in stats:
            self.scores.append((float(stats["Loss/scores/real"]), float(stats["Loss/scores/fake"])))

    def scalars(self, state: LoopState) -> dict[str, float]:
        """DI over the tick: mean D(real) - mean D(fake), raw logits of the Dmain steps since the last tick
        (spec §5: what the official logs' Scores/real and Scores/fake give)."""
        if not self.scores:
            return {}
        real, fake = (sum(values) / len(values) for values in zip(*self.scores))
        self.scores = []
        return {"Metrics/DI": real - fake, "Metrics/scores_real": real, "Metrics/scores_fake": fake}
