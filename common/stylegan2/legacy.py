"""Import official StyleGAN2-ADA ``network-snapshot-*.pkl`` files and those of its forks without executing code.

An official snapshot pickles ``dict(training_set_kwargs, G, D, G_ema, augment_pipe)`` whose networks are
``torch_utils.persistence`` objects: each reduces to ``_reconstruct_persistent_obj(meta)`` where ``meta`` carries
the FULL source of ``training/networks.py``, which the official loader ``exec()``s (spec stylegan2_base.md §7).
Here a restricted unpickler maps that reconstructor to :class:`PersistentStub` (class name, constructor kwargs,
``__dict__`` state; the source text is kept as an inert string and never run), maps ``dnnlib.util.EasyDict`` to
``dict``, rebuilds tensors through weights-only loads, and turns the plain ``torch.nn`` modules the forks pickle
by value (InsGen's heads: ``Sequential``/``Linear``/``ReLU``; EqGAN-SA's ``InstanceNorm2d``/``LeakyReLU``; a
``DistributedDataParallel`` wrapper and its config objects) into inert :class:`ObjectStub` records; no class is
ever instantiated and every other global is refused. The stubs' tensors are then loaded, strictly, into this
project's modules built from the stubs' constructor kwargs.

The forks (spec insgen.md, dynamicd.md, eqgan.md):

- genforce/insgen adds ``D_ema`` (a Discriminator, built like D) and the heads ``DHead``/``GHead`` (``CLHead``,
  kept as state dicts in ``ImportedSnapshot.states``); its conditional D maps labels with 0 layers;
- genforce/dynamicd adds width-masking arguments to D (``block_kwargs.dynamic_kwargs``/``keepd``,
  ``epilogue_kwargs.occupy_ratio``/``randomly_select``); the weights are those of a plain D, which is built here
  (equal to the pickled D at width ratio 1), and the arguments plus the ratio at snapshot time are returned in
  ``ImportedSnapshot.fork_kwargs`` for the dynamicd package;
- genforce/eqgan-sa's G takes ``use_sel`` and carries heatmap encoders and spatial encoding layers: only the eqgan
  package can build it, through its method's ``build_official`` (:data:`FORK_METHODS`).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from common.checkpoint import CheckpointError, load_module_state
from common.stylegan2.networks import Discriminator, Generator

if TYPE_CHECKING:
    from common.stylegan2.method import Method


class UnsafePickleError(CheckpointError, pickle.UnpicklingError):
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
    """A ``torch.nn`` module pickled by value (``Sequential``, ``Linear``, a DDP wrapper): its class name and
    ``__dict__`` as inert data; the class itself is never instantiated."""

    class_name = "object"

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state

    def state_dict(self, prefix: str = "") -> OrderedDict[str, torch.Tensor]:
        return PersistentStub(self.class_name, "", self.state).state_dict(prefix)


class InertStub:
    """A non-module ``torch.distributed`` value inside a pickled DDP wrapper (``_JoinConfig``, bucket settings):
    its arguments and state are kept as data, nothing is called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


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


def numpy_dtype(name: str, align: bool = False, copy: bool = False) -> Any:
    import numpy as np

    return np.dtype(name)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocols 0 and 1) restricted to the stubs above."""
    if isinstance(cls, type) and issubclass(cls, (ObjectStub, InertStub)):
        return cls.__new__(cls)
    raise UnsafePickleError(f"refusing to instantiate {cls!r}")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "device"): torch.device,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): numpy_dtype,
    ("copyreg", "_reconstructor"): _reconstructor,
}
_STUB_CLASSES: dict[tuple[str, str], type] = {}


def _torch_class(module: str, name: str) -> type | None:
    """The class ``module.name`` of an already imported ``torch.nn`` / ``torch.distributed`` module (only looked
    up, so a pickle cannot make anything be imported)."""
    if not (module.startswith("torch.nn.") or module.startswith("torch.distributed.")):
        return None
    value = getattr(sys.modules.get(module), name, None)
    return value if isinstance(value, type) else None


def _stub_class(module: str, name: str) -> type | None:
    """An inert stand-in for a torch.nn module class (ObjectStub) or a torch.distributed value (InertStub)."""
    key = (module, name)
    if key not in _STUB_CLASSES:
        cls = _torch_class(module, name)
        if cls is None:
            return None
        base = ObjectStub if issubclass(cls, nn.Module) else InertStub
        if base is InertStub and not module.startswith(("torch.nn.parallel.", "torch.distributed.")):
            return None
        _STUB_CLASSES[key] = type(f"{name}Stub", (base,), {"class_name": name})
    return _STUB_CLASSES[key]


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in the allow-list and inert stubs of torch's own module classes; anything else
    raises :class:`UnsafePickleError`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        stub = _stub_class(module, name)
        if stub is not None:
            return stub
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: this pickle would run code outside the StyleGAN2 snapshot format"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not part of the StyleGAN2 snapshot format")


@dataclass
class ImportedSnapshot:
    """An official snapshot rebuilt as this project's modules (eval mode, no grad).

    ``extra``: other networks rebuilt as modules (InsGen's ``D_ema``); ``states``: state dicts of the entries that
    are not (InsGen's ``DHead``/``GHead``); ``fork_kwargs``: per network, the fork arguments set aside to build it
    (DynamicD's width masking).
    """

    G: nn.Module | None
    D: nn.Module | None
    G_ema: nn.Module | None
    training_set_kwargs: dict[str, Any] | None
    augment_pipe: OrderedDict[str, torch.Tensor] | None
    extra: dict[str, nn.Module] = field(default_factory=dict)
    states: dict[str, OrderedDict[str, torch.Tensor]] = field(default_factory=dict)
    fork_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)


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
# genforce/dynamicd's D arguments: (kwargs section, key); its weights are a plain D's
DYNAMICD_KWARGS = (
    ("block_kwargs", "dynamic_kwargs"),
    ("block_kwargs", "keepd"),
    ("epilogue_kwargs", "occupy_ratio"),
    ("epilogue_kwargs", "randomly_select"),
)
# constructor arguments of official forks that only a paper package can build: argument -> (fork, method)
FORK_METHODS = {"use_sel": ("EqGAN-SA", "eqgan.method:EqGANSA")}


def _unwrap(obj: Any) -> Any:
    while isinstance(obj, ObjectStub) and obj.class_name == "DistributedDataParallel":
        obj = (obj.state.get("_modules") or {}).get("module")
    return obj


def _fork_arguments(kwargs: dict[str, Any]) -> list[str]:
    """The :data:`FORK_METHODS` arguments among a network's kwargs (top level or inside ``synthesis_kwargs``)."""
    nested = kwargs.get("synthesis_kwargs") or {}
    return sorted(key for key in FORK_METHODS if key in kwargs or key in nested)


def fork_method_ref(data: dict[str, Any]) -> str | None:
    """The project method that must build this pickle's networks (``'eqgan.method:EqGANSA'``), or None."""
    for key in ("G", "G_ema", "D"):
        stub = _unwrap(data.get(key))
        if isinstance(stub, PersistentStub):
            for argument in _fork_arguments(stub.init_kwargs):
                return FORK_METHODS[argument][1]
    return None


def build_module(stub: Any, name: str, source: str, method: Method | None = None) -> tuple[nn.Module, dict]:
    """Our module for a G/D stub and the fork kwargs set aside: the method's ``build_official`` first, else built
    from the stub's constructor kwargs; then strictly loaded with its tensors, eval mode, no grad."""
    stub = _unwrap(stub)
    if not isinstance(stub, PersistentStub) or stub.class_name not in _BUILDERS:
        found = getattr(stub, "class_name", type(stub).__name__)
        raise CheckpointError(f"{source}: '{name}' is a {found}, expected Generator or Discriminator")
    if stub.state.get("_init_args"):
        raise CheckpointError(f"{source}: '{name}' was built with positional arguments, which this importer cannot map")
    module = method.build_official(name, stub) if method is not None else None
    set_aside: dict[str, Any] = {}
    if module is None:
        kwargs = stub.init_kwargs
        if stub.class_name == "Discriminator":
            for section, key in DYNAMICD_KWARGS:
                if key in (kwargs.get(section) or {}):
                    set_aside[f"{section}.{key}"] = kwargs[section].pop(key)
            if set_aside:  # the width ratio the training loop had last written into every dynamic layer
                epilogue_out = _unwrap(stub.state["_modules"]["b4"]).state["_modules"]["out"]
                set_aside["occupy_ratio"] = _unwrap(epilogue_out).state.get("occupy_ratio")
        for argument in _fork_arguments(kwargs):
            fork, ref = FORK_METHODS[argument]
            raise CheckpointError(
                f"{source}: '{name}' is a network of the {fork} fork ({argument}); only the '{ref.split('.')[0]}' "
                f"package builds it: load it with common.stylegan2.snapshot.load_networks (it uses {ref}) or pass "
                "that method"
            )
        unknown = sorted(set(kwargs) - _KNOWN_KWARGS[stub.class_name])
        if unknown:
            raise CheckpointError(
                f"{source}: '{name}' was built with constructor arguments this importer does not know: "
                f"{', '.join(unknown)} (a modified network class?)"
            )
        try:
            module = _BUILDERS[stub.class_name](**kwargs)
        except TypeError as err:
            raise CheckpointError(f"{source}: '{name}' has constructor arguments this project lacks ({err})") from None
    load_module_state(module, stub.state_dict(), name, source)
    return module.eval().requires_grad_(False), set_aside


def read_official_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """The snapshot dict of an official pickle, every module as an inert stub; one-line errors for unreadable,
    truncated, unsafe or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no snapshot file at {path}")
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, RecursionError) as err:  # corrupt bytes can ask for any length or depth
        reason = str(err) or type(err).__name__
        raise CheckpointError(f"{path} is not a readable StyleGAN2-ADA pickle (truncated or corrupt: {reason})"
                              ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: expected a dict of networks (a PyTorch StyleGAN2-ADA snapshot); TF pickles must first be "
            "converted with the official legacy.py"
        )
    return data


def import_official(data: dict[str, Any], source: str, method: Method | None = None) -> ImportedSnapshot:
    """Build this project's modules from a :func:`read_official_pickle` dict (``method`` builds fork networks)."""
    built: dict[str, nn.Module] = {}
    fork_kwargs: dict[str, dict[str, Any]] = {}
    states: dict[str, OrderedDict[str, torch.Tensor]] = {}
    for key, value in data.items():
        if key in ("augment_pipe", "training_set_kwargs") or value is None:
            continue
        stub = _unwrap(value)
        if isinstance(stub, PersistentStub) and stub.class_name in _BUILDERS:
            built[key], set_aside = build_module(stub, key, source, method)
            if set_aside:
                fork_kwargs[key] = set_aside
        elif isinstance(stub, (PersistentStub, ObjectStub)):
            states[key] = stub.state_dict()
    pipe = data.get("augment_pipe")
    return ImportedSnapshot(
        G=built.pop("G", None),
        D=built.pop("D", None),
        G_ema=built.pop("G_ema", None),
        training_set_kwargs=_plain(data.get("training_set_kwargs")),
        augment_pipe=_unwrap(pipe).state_dict() if pipe is not None else None,
        extra=built,
        states=states,
        fork_kwargs=fork_kwargs,
    )


def load_official_snapshot(path: str | os.PathLike, method: Method | None = None) -> ImportedSnapshot:
    """Read an official (or InsGen/DynamicD/EqGAN-SA) ``network-snapshot-*.pkl`` into this project's modules."""
    return import_official(read_official_pickle(path), str(path), method)
