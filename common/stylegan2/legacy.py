"""Import official StyleGAN2-ADA ``network-snapshot-*.pkl`` files without executing their code (spec §7).

An official snapshot pickles ``dict(training_set_kwargs, G, D, G_ema, augment_pipe)`` whose networks are
``torch_utils.persistence`` objects: each reduces to ``_reconstruct_persistent_obj(meta)`` where ``meta`` carries
the FULL source of ``training/networks.py``, which the official loader ``exec()``s. Here a restricted unpickler maps
that reconstructor to :class:`PersistentStub` (class name, constructor kwargs, ``__dict__`` state; the source text is
kept as an inert string and never run), maps ``dnnlib.util.EasyDict`` to ``dict``, rebuilds tensors through
weights-only loads, and refuses every other global. The stubs' parameters and buffers are then loaded, strictly,
into this project's modules built from the stubs' constructor kwargs.

InsGen, DynamicD and EqGAN snapshots add entries (``D_ema``, contrastive heads, ...): entries that are not G, D or
G_ema come back as plain state dicts in ``ImportedSnapshot.extra``. DDP-wrapped modules are unwrapped.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.checkpoint import load_module_state
from common.stylegan2.networks import Discriminator, Generator


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list: it could run code, so it is not loaded."""


@dataclass
class PersistentStub:
    """What a ``torch_utils.persistence`` object pickles: its class name, source module text and ``__dict__``."""

    class_name: str
    module_src: str
    state: dict[str, Any]

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return _plain(self.state.get("_init_kwargs") or {})

    def state_dict(self, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
        """Parameters, then buffers, then sub-modules, with dotted names (the order of ``nn.Module.state_dict``)."""
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for kind in ("_parameters", "_buffers"):
            for name, tensor in (self.state.get(kind) or {}).items():
                if tensor is not None:
                    out[prefix + name] = tensor.detach() if isinstance(tensor, torch.Tensor) else tensor
        for name, child in (self.state.get("_modules") or {}).items():
            if child is not None:
                out.update(_stub_state_dict(child, f"{prefix}{name}."))
        return out


class ObjectStub:
    """A plain ``nn.Module`` global (a DDP wrapper) rebuilt as inert state, never as the class itself."""

    class_name = "object"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
        return PersistentStub(self.class_name, "", self.state).state_dict(prefix)


class _DDPStub(ObjectStub):
    class_name = "DistributedDataParallel"


def _stub_state_dict(obj: Any, prefix: str) -> OrderedDict[str, torch.Tensor]:
    if isinstance(obj, (PersistentStub, ObjectStub)):
        return obj.state_dict(prefix)
    raise UnsafePickleError(f"unexpected object of type {type(obj).__name__} inside a module tree")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> PersistentStub:
    if meta.get("type") != "class":
        raise UnsafePickleError(f"unsupported persistent object type {meta.get('type')!r}")
    return PersistentStub(
        class_name=meta["class_name"], module_src=meta.get("module_src", ""), state=dict(meta.get("state") or {})
    )


def _load_storage_from_bytes(data: bytes) -> Any:
    """Storages in legacy pickles are nested ``torch.save`` payloads: load them weights-only."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _numpy_scalar(dtype: Any, data: bytes) -> Any:
    import numpy as np

    return np.frombuffer(data, dtype=dtype)[0].item()


def _numpy_dtype(name: str, align: bool = False, copy: bool = False) -> Any:
    import numpy as np

    return np.dtype(name)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocols 0 and 1) restricted to the stubs above."""
    if isinstance(cls, type) and issubclass(cls, ObjectStub):
        return cls.__new__(cls)
    raise UnsafePickleError(f"refusing to instantiate {cls!r}")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("torch.nn.parallel.distributed", "DistributedDataParallel"): _DDPStub,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in the allow-list above; anything else raises :class:`UnsafePickleError`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: this pickle would run code outside the StyleGAN2 "
                "snapshot format"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not part of the StyleGAN2 snapshot format")


@dataclass
class ImportedSnapshot:
    """Networks of an official snapshot rebuilt as this project's modules (eval mode, no grad)."""

    G: Generator | None
    D: Discriminator | None
    G_ema: Generator | None
    training_set_kwargs: dict[str, Any] | None
    augment_pipe: OrderedDict[str, torch.Tensor] | None
    extra: dict[str, OrderedDict[str, torch.Tensor]]


_BUILDERS = {"Generator": Generator, "Discriminator": Discriminator}
_KNOWN_KWARGS = {
    "Generator": {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"},
    "Discriminator": {
        "c_dim",
        "img_resolution",
        "img_channels",
        "architecture",
        "channel_base",
        "channel_max",
        "num_fp16_res",
        "conv_clamp",
        "cmap_dim",
        "block_kwargs",
        "mapping_kwargs",
        "epilogue_kwargs",
    },
}


def _unwrap(obj: Any) -> Any:
    while isinstance(obj, ObjectStub) and obj.class_name == "DistributedDataParallel":
        obj = (obj.state.get("_modules") or {}).get("module")
    return obj


def build_module(stub: PersistentStub, name: str, source: str) -> nn.Module:
    """Our module for a G/D stub: built from its constructor kwargs, then strictly loaded with its tensors."""
    stub = _unwrap(stub)
    if not isinstance(stub, PersistentStub) or stub.class_name not in _BUILDERS:
        found = getattr(stub, "class_name", type(stub).__name__)
        raise pickle.UnpicklingError(f"{source}: '{name}' is a {found}, expected Generator or Discriminator")
    kwargs = stub.init_kwargs
    unknown = sorted(set(kwargs) - _KNOWN_KWARGS[stub.class_name])
    if unknown:
        raise pickle.UnpicklingError(
            f"{source}: '{name}' was built with constructor arguments this importer does not know: "
            f"{', '.join(unknown)} (a modified network class?)"
        )
    module = _BUILDERS[stub.class_name](**kwargs)
    load_module_state(module, stub.state_dict(), name, source)
    return module.eval().requires_grad_(False)


def load_official_snapshot(path: str | os.PathLike) -> ImportedSnapshot:
    """Read an official (or InsGen/DynamicD/EqGAN) ``network-snapshot-*.pkl`` into this project's modules."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no snapshot file at {path}")
    with open(path, "rb") as f:
        data = RestrictedUnpickler(f).load()
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(
            f"{path}: expected a dict of networks (a PyTorch StyleGAN2-ADA snapshot); TF pickles must first be "
            "converted with the official legacy.py"
        )
    nets = {
        key: build_module(data[key], key, str(path)) if data.get(key) is not None else None
        for key in ("G", "D", "G_ema")
    }
    pipe = data.get("augment_pipe")
    extra = {
        key: _unwrap(value).state_dict()
        for key, value in data.items()
        if key not in ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")
        and isinstance(_unwrap(value), (PersistentStub, ObjectStub))
    }
    return ImportedSnapshot(
        G=nets["G"],
        D=nets["D"],
        G_ema=nets["G_ema"],
        training_set_kwargs=_plain(data.get("training_set_kwargs")),
        augment_pipe=_unwrap(pipe).state_dict() if pipe is not None else None,
        extra=extra,
    )
