"""How a paper plugs into the shared StyleGAN2-ADA loop: a :class:`Method` with named hooks (ARCHITECTURE.md).

The loop (``training.train``) calls, in this order:

1. ``build_networks(cfg, shape)`` -> :class:`Networks`: G, D and extra model modules, built or wrapped BEFORE the
   loop copies G_ema from G, so a modified G and its EMA have the same structure (GenDA's adaptor, EqGAN-SA's
   spatial encoding layers, GH-Feat's encoder);
2. ``init_networks(nets, source)``, only with ``train.init_from`` (a project snapshot or an official pickle, loaded
   by ``snapshot.load_networks``) on a fresh run: copies the pretrained weights in; optimisers and counters start
   fresh;
3. ``setup(state)``: training-only modules with their own optimisers (InsGen's heads), another p schedule;
4. ``trainable_parameters(state, 'G' | 'D')``: what the G and D phases train, all-reduce and step; every other
   parameter of G and D keeps ``requires_grad=False`` and ``grad is None`` (GenDA freezes G and D);
5. ``build_loss``; then per iteration ``before_iteration``, the phases, the EMAs, ``after_iteration``;
6. ``scalars(state)`` at every tick: method-level values for ``stats.jsonl`` (DynamicD's width ratio);
7. ``extra_state`` / ``load_extra_state``: method state in snapshots that is not a module's state_dict.

A snapshot records the method as ``'<module>:<class>'`` (``Method.ref``) next to the config, never as pickled
code, so ``load_networks`` can rebuild a modified G/D with the method's own ``build_networks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from common.checkpoint import CheckpointError, load_module_state
from common.data import ImageDataset
from common.stylegan2.ada import AdaptiveP
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config
from common.stylegan2.loss import StyleGAN2Loss

if TYPE_CHECKING:
    from common.stylegan2.legacy import PersistentStub


@dataclass(frozen=True)
class NetworkShape:
    """What the dataset fixes about the networks; recorded in every snapshot."""

    resolution: int
    img_channels: int
    c_dim: int


@dataclass
class Networks:
    """A model: G, D, G_ema and the extra modules a method builds with them (``load_networks`` returns this).

    ``unbuilt`` holds the state dicts of a snapshot's other modules, which only training makes (InsGen's heads,
    the augment pipe, an official pickle's ``DHead``); ``source`` names the file they came from.
    """

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None = None
    extra: dict[str, nn.Module] = field(default_factory=dict)
    unbuilt: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    source: str = ""

    def modules(self) -> dict[str, nn.Module]:
        """Every built module by its snapshot name: G, D, G_ema (when set), then the extras."""
        named = {"G": self.G, "D": self.D}
        if self.G_ema is not None:
            named["G_ema"] = self.G_ema
        return {**named, **self.extra}


@dataclass
class LoopState:
    """Everything the loop and a :class:`Method` share. ``modules``/``optimizers`` are what snapshots hold."""

    cfg: StyleGAN2Config
    device: torch.device
    dataset: ImageDataset
    run_dir: Path
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    augment_pipe: nn.Module | None
    ada: AdaptiveP | None
    modules: dict[str, nn.Module] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    ema_pairs: list[tuple[nn.Module, nn.Module, Callable[[LoopState], float]]] = field(default_factory=list)
    loss: StyleGAN2Loss | None = None
    cur_nimg: int = 0
    batch_idx: int = 0


class Method:
    """Plain StyleGAN2-ADA; paper packages subclass this and override what they add (module docstring).

    ``config_class`` is the schema of the method's configs (snapshots are rebuilt with it); a subclass must be
    constructible without arguments (it reads everything from the config).
    """

    name = "stylegan2-ada"
    config_class: type[StyleGAN2Config] = StyleGAN2Config

    def build_networks(self, cfg: StyleGAN2Config, shape: NetworkShape) -> Networks:
        """G, D and extra model modules of a resolved config; the loop copies G_ema from the returned G."""
        return Networks(
            G=build_generator(cfg, shape.resolution, shape.img_channels, shape.c_dim),
            D=build_discriminator(cfg, shape.resolution, shape.img_channels, shape.c_dim),
        )

    def init_networks(self, nets: Networks, source: Networks) -> None:
        """Copy a pretrained model into fresh networks, as the official ``--resume`` of a pickle does: G <- G,
        G_ema <- G_ema, D <- D, and every extra module the source has under the same name. Strict: a missing,
        unexpected or mis-shaped key is an error that lists them."""
        pairs = [("G", nets.G, source.G), ("G_ema", nets.G_ema, source.G_ema), ("D", nets.D, source.D)]
        pairs += [(name, module, source.extra[name]) for name, module in nets.extra.items() if name in source.extra]
        for name, target, pretrained in pairs:
            if pretrained is None:
                raise CheckpointError(f"train.init_from: {source.source} holds no {name}")
            load_module_state(target, pretrained.state_dict(), name, f"train.init_from {source.source}")

    def trainable_parameters(self, state: LoopState, network: str) -> list[nn.Parameter]:
        """The parameters the phases of ``network`` ('G' or 'D') train: all of ``state.G`` / ``state.D``."""
        return list((state.G if network == "G" else state.D).parameters())

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        return StyleGAN2Loss(G, D, **self.loss_kwargs(state))

    def loss_kwargs(self, state: LoopState) -> dict[str, Any]:
        """The :class:`StyleGAN2Loss` keyword arguments of ``state.cfg`` (subclass losses take them too)."""
        loss_cfg = state.cfg.loss
        return dict(
            augment_pipe=state.augment_pipe,
            ada=state.ada,
            r1_gamma=loss_cfg.r1_gamma,
            style_mixing_prob=loss_cfg.style_mixing_prob,
            pl_weight=loss_cfg.pl_weight,
            pl_batch_shrink=loss_cfg.pl_batch_shrink,
            pl_decay=loss_cfg.pl_decay,
        )

    def setup(self, state: LoopState) -> None:
        """Create training-only modules/optimizers/EMA pairs and register them in ``state``."""

    def before_iteration(self, state: LoopState) -> None:
        """Runs before the phases of every iteration (may change D)."""

    def after_iteration(self, state: LoopState) -> None:
        """Runs after the phases and G's EMA update of every iteration."""

    def build_official(self, name: str, stub: PersistentStub) -> nn.Module | None:
        """A module for network ``name`` of an official fork's pickle that common cannot build (EqGAN-SA's G),
        made from the stub's ``class_name``, ``init_kwargs`` and ``state``; its tensors are loaded afterwards.
        None (the default) leaves the network to common's importer."""
        return None

    def scalars(self, state: LoopState) -> dict[str, float]:
        """Method-level values logged to ``stats.jsonl`` at every tick (loss terms go into ``loss.stats``)."""
        return {}

    def extra_state(self, state: LoopState) -> dict[str, Any]:
        return {}

    def ref(self) -> str:
        """``'<module>:<qualified class name>'``, what a snapshot records to rebuild the method's networks."""
        cls = type(self)
        return f"{cls.__module__}:{cls.__qualname__}"

    def load_extra_state(self, state: LoopState, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

