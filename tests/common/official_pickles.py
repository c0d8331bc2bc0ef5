"""Snapshot pickles in the structure the official StyleGAN2-ADA forks write (spec stylegan2_base.md §7), made here
without their code.

The official ``training_loop.py`` pickles ``dict(training_set_kwargs, G, D, G_ema, augment_pipe, ...)`` with
``pickle.dump``. Classes decorated with ``torch_utils.persistence.persistent_class`` (every network class, InsGen's
``CLHead``, EqGAN-SA's ``SEL``) reduce to ``_reconstruct_persistent_obj(meta)``, ``meta = dict(type='class',
version=6, module_src=<source text>, class_name, state=__dict__)`` with ``_init_args``/``_init_kwargs`` (EasyDicts)
in the state; every other object, plain ``torch.nn`` modules and a ``DistributedDataParallel`` wrapper included, is
pickled by value as usual. :class:`OfficialPickler` does the same through ``reducer_override``: instances of the
classes in ``persistent`` become persistent records, the rest is left to pickle.

:data:`OFFICIAL_GLOBALS` lists the globals measured in pickles written by the official genforce/insgen,
genforce/dynamicd and genforce/eqgan-sa code (run on CPU, torch 2.14): a fixture may use only these.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.stylegan2 import networks

SOURCE_THAT_MUST_NOT_RUN = "raise SystemExit('the official source must never run')"

# globals of official snapshots (insgen, insgen with DDP-wrapped heads, dynamicd, eqgan-sa), torch 2.14
OFFICIAL_GLOBALS = {
    ("collections", "OrderedDict"),
    ("dnnlib.util", "EasyDict"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "scalar"),
    ("torch", "device"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.distributed.algorithms.join", "_JoinConfig"),
    ("torch.nn.modules.activation", "LeakyReLU"),
    ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.instancenorm", "InstanceNorm2d"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.parallel.distributed", "DistributedDataParallel"),
    ("torch.nn.parallel.distributed", "_BucketCapacityConfig"),
    ("torch.storage", "_load_from_bytes"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
}
NETWORK_CLASSES = tuple(
    cls for cls in vars(networks).values() if isinstance(cls, type) and issubclass(cls, nn.Module)
)


class EasyDict(dict):
    """Pickles as ``dnnlib.util.EasyDict``, as the official kwargs objects do."""


def _reconstruct_persistent_obj(meta: dict) -> Any:  # only referenced by name in the pickle
    raise AssertionError("never called while writing")


class OfficialPickler(pickle.Pickler):
    """``pickle.Pickler`` that reduces instances of ``persistent`` classes as ``torch_utils.persistence`` does."""

    def __init__(self, file: io.BufferedIOBase, persistent: Iterable[type], init_kwargs: dict[int, dict]) -> None:
        super().__init__(file)
        self.persistent = tuple(persistent)
        self.init_kwargs = init_kwargs

    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, self.persistent):
            return NotImplemented
        state = dict(obj.__dict__)
        state["_init_args"] = ()
        state["_init_kwargs"] = EasyDict(self.init_kwargs.get(id(obj), {}))
        meta = dict(type="class", version=6, module_src=SOURCE_THAT_MUST_NOT_RUN, class_name=type(obj).__name__,
                    state=state)
        return _reconstruct_persistent_obj, (meta,)


def write_official_pickle(path: Path, data: dict[str, Any], init_kwargs: dict[str, dict],
                          persistent: Iterable[type] = ()) -> set[tuple[str, str]]:
    """Pickle ``data`` (values: modules or None; ``training_set_kwargs`` a dict) as an official snapshot.

    ``init_kwargs[name]`` are the constructor kwargs recorded for ``data[name]`` (nested dicts become EasyDicts);
    ``persistent`` adds classes beyond this project's network classes. Returns the globals the pickle uses.
    """
    _EASYDICT_NAMES = ("dnnlib.util", "EasyDict")
    EasyDict.__module__, EasyDict.__qualname__ = _EASYDICT_NAMES
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    fake = {"torch_utils": types.ModuleType("torch_utils"), "dnnlib": types.ModuleType("dnnlib")}
    fake["torch_utils.persistence"] = types.ModuleType("torch_utils.persistence")
    fake["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    fake["dnnlib.util"] = types.ModuleType("dnnlib.util")
    fake["dnnlib.util"].EasyDict = EasyDict
    saved = {key: sys.modules.get(key) for key in fake}
    sys.modules.update(fake)
    try:
        by_id = {id(data[name]): _easy(kwargs) for name, kwargs in init_kwargs.items() if data.get(name) is not None}
        payload = {name: _easy(value) if isinstance(value, dict) else value for name, value in data.items()}
        with open(path, "wb") as f:
            OfficialPickler(f, (*NETWORK_CLASSES, *persistent), by_id).dump(payload)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return pickle_globals(path)


def _easy(value: Any) -> Any:
    return EasyDict({k: _easy(v) for k, v in value.items()}) if isinstance(value, dict) else value


def pickle_globals(path: Path) -> set[tuple[str, str]]:
    """The (module, name) globals a pickle references: unpickled with every global replaced by an inert record."""
    found: set[tuple[str, str]] = set()

    class Inert(dict):  # a dict, so the items of a pickled OrderedDict/EasyDict can be set
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__()

        def __setstate__(self, state: Any) -> None:
            pass

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found.add((module, name))
            return Inert

    with open(path, "rb") as f:
        Recorder(f).load()
    return found


class CLHead(nn.Module):
    """genforce/insgen ``training/contrastive_head.py: CLHead``'s structure: plain torch.nn projection MLPs (pickled
    by value inside the persistent head) and the queue buffers."""

    def __init__(self, inplanes: int = 16, queue_size: int = 12) -> None:
        super().__init__()
        self.inplanes, self.temperature, self.queue_size, self.m = inplanes, 0.2, queue_size, 0.999
        self.mlp = nn.Sequential(nn.Linear(inplanes, inplanes), nn.ReLU(), nn.Linear(inplanes, 128))
        self.momentum_mlp = nn.Sequential(nn.Linear(inplanes, inplanes), nn.ReLU(), nn.Linear(inplanes, 128))
        self.momentum_mlp.requires_grad_(False)
        self.register_buffer("queue", torch.nn.functional.normalize(torch.randn(128, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


class SEL(nn.Module):
    """genforce/eqgan-sa ``training/networks.py: SEL``'s structure: InstanceNorm2d, Sequential(Conv2dLayer), two
    1-channel Conv2dLayers, Sequential(LeakyReLU, Conv2dLayer); applied as x + 0.1 * output(IN(x) * (1 + s) + m)."""

    def __init__(self, norm_dim: int, nhidden: int = 64, map_dim: int = 1) -> None:
        super().__init__()
        self.inorm_fn = nn.InstanceNorm2d(norm_dim, affine=False)
        self.shared = nn.Sequential(networks.Conv2dLayer(map_dim, nhidden, kernel_size=3, activation="lrelu"))
        self.sigma = networks.Conv2dLayer(nhidden, 1, kernel_size=3)
        self.mu = networks.Conv2dLayer(nhidden, 1, kernel_size=3)
        self.output = nn.Sequential(nn.LeakyReLU(2e-1), networks.Conv2dLayer(norm_dim, norm_dim, kernel_size=3))

    def forward(self, x: torch.Tensor, hm: torch.Tensor) -> torch.Tensor:
        hm = torch.nn.functional.interpolate(hm, size=x.shape[2:], mode="bilinear", align_corners=True)
        feature = self.shared(hm)
        return x + self.output(self.inorm_fn(x) * (1 + self.sigma(feature)) + self.mu(feature)) * 0.1


def eqgan_generator(g_kwargs: dict) -> networks.Generator:
    """A Generator with EqGAN-SA's official module layout, built through common's hooks: heatmap encoders
    ``synthesis.hm_conv{0,1}_b{8,16,32}`` and an ``sel`` input hook on every synthesis layer and torgb, fed the
    routed heatmap features (block r reads level ``b{2r}``; blocks >= 32 the 96-channel concatenation)."""
    G = networks.Generator(**g_kwargs)
    synthesis = G.synthesis
    for level, centres in (("b8", 1), ("b16", 2), ("b32", 4)):
        setattr(synthesis, f"hm_conv0_{level}", networks.Conv2dLayer(centres, 16, kernel_size=3, activation="lrelu"))
        setattr(synthesis, f"hm_conv1_{level}", networks.Conv2dLayer(16, 32, kernel_size=3, activation="lrelu"))
    for res in synthesis.block_resolutions:
        for layer in getattr(synthesis, f"b{res}").modulated_layers():
            in_channels = layer.affine.out_features
            layer.set_input_hook(SEL(in_channels, map_dim=96 if res > 16 else 32), name="sel")
    return G


def eqgan_layer_inputs(G: networks.Generator, heatmaps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Heatmaps {'b8': (N,1,R,R), 'b16': (N,2,R,R), 'b32': (N,4,R,R)} -> per-block SEL inputs (official routing)."""
    synthesis = G.synthesis
    feats = {}
    for level in ("b8", "b16", "b32"):
        x = getattr(synthesis, f"hm_conv0_{level}")(heatmaps[level])
        feats[level] = getattr(synthesis, f"hm_conv1_{level}")(x, gain=0.5**0.5)
    concat = torch.cat([feats["b8"], feats["b16"], feats["b32"]], dim=1)
    return {f"b{res}": feats.get(f"b{2 * res}", concat) for res in synthesis.block_resolutions}
