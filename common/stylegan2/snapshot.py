"""``load_networks(path)``: G, D, G_ema and a method's extra modules from a project snapshot or an official pickle.

A project snapshot (``snapshot-*.pt`` or a run dir, whose latest snapshot is used) records its config, the network
shape and the method that built it (``'insgen.method:InsGen'``, ``Method.ref()``). The
networks are rebuilt with that method's ``build_networks`` from that config and then loaded strictly, so a G/D that
a paper modified (GenDA's adaptor, EqGAN-SA's spatial encoding) comes back without anyone importing the paper's code
by hand. Only methods of this project's packages are imported; snapshots from before methods were recorded are
rebuilt as plain StyleGAN2-ADA.

An official ``network-snapshot-*.pkl`` (NVlabs, InsGen, DynamicD, EqGAN-SA) goes through the restricted importer
of :mod:`common.stylegan2.legacy`, which never runs the pickle's code.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
from pathlib import Path

import torch

from common.checkpoint import CheckpointError, load_checkpoint, load_module_state, resolve_resume
from common.config import config_from_dict
from common.stylegan2.compose import ComposedMethod
from common.stylegan2.config import StyleGAN2Config
from common.stylegan2.legacy import fork_method_ref, import_official, read_official_pickle
from common.stylegan2.method import Method, Networks, NetworkShape

# the project's top-level packages whose methods a snapshot may name
PROJECT_PACKAGES = ("common", "insgen", "dynamicd", "eqgan", "oneshot_gan", "ghfeat", "volumegan")


def resolve_method(ref: str, source: str = "snapshot") -> Method:
    """The :class:`Method` named ``'<module>:<class>'`` in a snapshot (only from this project's packages); methods
    joined by '+' are composed again (``common.stylegan2.compose``)."""
    if "+" in ref:
        return ComposedMethod([resolve_method(part, source) for part in ref.split("+")])
    module_name, _, qualname = ref.partition(":")
    if module_name.split(".")[0] not in PROJECT_PACKAGES or not qualname:
        raise CheckpointError(
            f"{source} names the method {ref!r}, which is not a method of this project's packages "
            f"({', '.join(PROJECT_PACKAGES)}); pass the method to load_networks(..., method=...) if you trust it"
        )
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError) as err:
        raise CheckpointError(
            f"{source} was written by the method {ref}, which this checkout does not provide ({err}); "
            f"install or update the '{module_name.split('.')[0]}' package"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise CheckpointError(f"{source}: {ref} is not a common.stylegan2 Method")
    return cls()


def load_networks(
    path: str | os.PathLike, device: torch.device | str = "cpu", method: Method | None = None
) -> Networks:
    """The networks of a project snapshot, a run dir or an official ``.pkl``: eval mode, no grad, on ``device``.

    ``method`` overrides the method recorded in the snapshot (or the one an official fork pickle needs). Building
    the networks does not move the caller's torch RNG.
    """
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        nets = _load_official(path, method) if path.suffix == ".pkl" else _load_project(path, method)
    for module in nets.modules().values():
        module.to(device).eval().requires_grad_(False)
    return nets


def _load_official(path: Path, method: Method | None) -> Networks:
    data = read_official_pickle(path)
    if method is None and (ref := fork_method_ref(data)) is not None:
        method = resolve_method(ref, str(path))
    snap = import_official(data, str(path), method)
    if snap.G is None or snap.D is None:
        raise CheckpointError(f"{path} holds no {'G' if snap.G is None else 'D'}")
    unbuilt = dict(snap.states)
    if snap.augment_pipe is not None:
        unbuilt["augment_pipe"] = snap.augment_pipe
    return Networks(snap.G, snap.D, snap.G_ema, extra=snap.extra, unbuilt=unbuilt, source=str(path))


def _load_project(path: Path, method: Method | None) -> Networks:
    path = resolve_resume(path) if path.is_dir() else path
    ckpt = load_checkpoint(path, map_location="cpu")
    record = ckpt["extra"].get("network")
    if ckpt.get("config") is None or "G_ema" not in ckpt["modules"] or record is None:
        raise CheckpointError(f"{path} is not a StyleGAN2-family snapshot (no config, G_ema or network record)")
    config = ckpt["config"]
    if method is None and "method" in record:
        method = resolve_method(record["method"], str(path))
    if method is None:  # written before snapshots named their method: plain StyleGAN2-ADA networks
        method = Method()
        known = {f.name for f in dataclasses.fields(StyleGAN2Config)}
        config = {k: v for k, v in config.items() if k in known}
    cfg = config_from_dict(method.config_class, config, source=str(path))
    shape = NetworkShape(record["resolution"], record["img_channels"], record["c_dim"])
    nets = method.build_networks(cfg, shape)
    nets.G_ema = copy.deepcopy(nets.G)
    nets.source = str(path)
    built = nets.modules()
    for name, module in built.items():
        if name not in ckpt["modules"]:
            raise CheckpointError(f"{path} has no module '{name}', which {type(method).__name__} builds")
        load_module_state(module, ckpt["modules"][name], name, str(path))
    nets.unbuilt = {name: state for name, state in ckpt["modules"].items() if name not in built}
    return nets
