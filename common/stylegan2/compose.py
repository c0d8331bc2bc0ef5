"""Methods compose: ``methods: [insgen, dynamicd]`` in a config trains InsGen's loss with DynamicD's width schedule.

What may combine follows from the hooks each method overrides (:class:`~common.stylegan2.method.Method`):

- the *exclusive* hooks decide what the model and its objective are: ``build_networks``, ``init_networks``,
  ``build_official``, ``trainable_parameters``, ``build_loss``. At most one method of a run may override each; a
  second one is refused with one line naming both (two loss-side methods such as InsGen and EqGAN-SA cannot both
  define Gmain/Dmain). The owner's override runs; where no method overrides a hook, StyleGAN2-ADA's default does;
- the *chained* hooks run for every method in the listed order: ``setup``, ``before_iteration``,
  ``after_iteration``, ``scalars`` (merged), ``extra_state``/``load_extra_state`` (kept per method).

So a loss-side method (InsGen, EqGAN-SA) combines with D-side ones that act through weight hooks installed in
``setup`` and schedules in the iteration hooks (DynamicD), and with ADA (``augment.mode``), which is the loop's own.
A config names methods by their package (:data:`METHODS`); its schema is the union of their config classes, so
``insgen:`` and ``dynamicd:`` sections sit side by side. A snapshot of a combined run records
``'insgen.method:InsGen+dynamicd.method:DynamicD'``, which ``load_networks`` composes again.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Sequence
from typing import Any

import yaml
from torch import nn

from common.config import ConfigError, read_config
from common.stylegan2.config import StyleGAN2Config
from common.stylegan2.legacy import PersistentStub
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape

# config name -> the method class of that paper package (imported only when a config names it)
METHODS = {
    "insgen": "insgen.method:InsGen",
    "dynamicd": "dynamicd.method:DynamicD",
    "eqgan": "eqgan.method:EqGANSA",
    "oneshot_gan": "oneshot_gan.method:GenDA",
    "volumegan": "volumegan.method:VolumeGAN",
}
EXCLUSIVE_HOOKS = {
    "build_networks": "build the networks",
    "init_networks": "place pretrained weights",
    "build_official": "build official fork networks",
    "trainable_parameters": "choose the trained parameters",
    "build_loss": "define the loss",
}


def _overrides(method: Method, hook: str) -> bool:
    return getattr(type(method), hook) is not getattr(Method, hook)


def composed_config_class(methods: Sequence[Method]) -> type[StyleGAN2Config]:
    """The union of the methods' config classes (each a StyleGAN2Config subclass with its own section)."""
    classes = list(dict.fromkeys(m.config_class for m in methods if m.config_class is not StyleGAN2Config))
    if not classes:
        return StyleGAN2Config
    if len(classes) == 1:
        return classes[0]
    name = "".join(cls.__name__.removesuffix("Config") for cls in classes) + "Config"
    return dataclasses.make_dataclass(name, [], bases=tuple(classes))


class ComposedMethod(Method):
    """Several methods in one run (module docstring); refuses two owners of one exclusive hook."""

    def __init__(self, methods: Sequence[Method]) -> None:
        self.methods = list(methods)
        self.owners: dict[str, Method] = {}
        for hook, meaning in EXCLUSIVE_HOOKS.items():
            claimants = [m for m in self.methods if _overrides(m, hook)]
            if len(claimants) > 1:
                names = " and ".join(m.name for m in claimants)
                raise ConfigError(
                    f"methods {names} both {meaning} ({hook}); combine at most one loss- or network-side method "
                    "with D-side methods (e.g. methods: [insgen, dynamicd])"
                )
            if claimants:
                self.owners[hook] = claimants[0]
        self.name = "+".join(m.name for m in self.methods)
        self.config_class = composed_config_class(self.methods)

    def ref(self) -> str:
        return "+".join(m.ref() for m in self.methods)

    def build_networks(self, cfg: StyleGAN2Config, shape: NetworkShape) -> Networks:
        owner = self.owners.get("build_networks")
        return owner.build_networks(cfg, shape) if owner else super().build_networks(cfg, shape)

    def init_networks(self, nets: Networks, source: Networks) -> None:
        owner = self.owners.get("init_networks")
        return owner.init_networks(nets, source) if owner else super().init_networks(nets, source)

    def build_official(self, name: str, stub: PersistentStub) -> nn.Module | None:
        owner = self.owners.get("build_official")
        return owner.build_official(name, stub) if owner else super().build_official(name, stub)

    def trainable_parameters(self, state: LoopState, network: str) -> list[nn.Parameter]:
        owner = self.owners.get("trainable_parameters")
        return owner.trainable_parameters(state, network) if owner else super().trainable_parameters(state, network)

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        owner = self.owners.get("build_loss")
        return owner.build_loss(state, G, D) if owner else super().build_loss(state, G, D)

    def setup(self, state: LoopState) -> None:
        for method in self.methods:
            method.setup(state)

    def before_iteration(self, state: LoopState) -> None:
        for method in self.methods:
            method.before_iteration(state)

    def after_iteration(self, state: LoopState) -> None:
        for method in self.methods:
            method.after_iteration(state)

    def scalars(self, state: LoopState) -> dict[str, float]:
        merged: dict[str, float] = {}
        for method in self.methods:
            merged.update(method.scalars(state))
        return merged

    def extra_state(self, state: LoopState) -> dict[str, Any]:
        return {m.ref(): m.extra_state(state) for m in self.methods}

    def load_extra_state(self, state: LoopState, extra: dict[str, Any]) -> None:
        for method in self.methods:
            method.load_extra_state(state, extra.get(method.ref(), {}))


def compose(methods: Sequence[Method]) -> Method:
    """One method for a run: plain StyleGAN2-ADA for none, the method itself for one, else a ComposedMethod."""
    if not methods:
        return Method()
    if len(methods) == 1:
        return methods[0]
    return ComposedMethod(methods)


def method_class(name: str) -> type[Method]:
    """The method class a config name stands for (:data:`METHODS`); one clear line if it is not available."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r} in 'methods'; choose from {', '.join(METHODS)}")
    module_name, _, qualname = METHODS[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError):
        raise ConfigError(f"method {name!r} is not implemented yet in this checkout ({METHODS[name]})") from None


def methods_from_names(names: Sequence[str]) -> Method:
    """The composed method of a config's ``methods`` list (each name once)."""
    if len(set(names)) != len(names):
        raise ConfigError(f"'methods' lists a method twice: {list(names)}")
    return compose([method_class(name)() for name in names])


def method_names(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> list[str]:
    """The ``methods`` list of a config file plus ``--set`` overrides, read before the config is validated (the
    methods decide its schema)."""
    names = read_config(path).get("methods") if path is not None else None
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "methods":
            names = yaml.safe_load(value)
    names = names or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"'methods' must be a list of method names, e.g. [insgen, dynamicd]; got {names!r}")
    return names


def method_of_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> Method:
    """The (composed) method a config file and its overrides ask for."""
    return methods_from_names(method_names(path, overrides))
