"""Official-snapshot import: a pickle with the official structure (spec §7), built here without official code."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types

import pytest
import torch

from common.stylegan2.legacy import UnsafePickleError, load_official_snapshot
from common.stylegan2.networks import Discriminator, Generator

G_KWARGS = dict(
    z_dim=16,
    c_dim=3,
    w_dim=16,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs={"num_layers": 2},
    synthesis_kwargs={"channel_base": 256, "channel_max": 16, "num_fp16_res": 0, "conv_clamp": 256},
)
D_KWARGS = dict(
    c_dim=3,
    img_resolution=16,
    img_channels=3,
    architecture="resnet",
    channel_base=256,
    channel_max=16,
    num_fp16_res=0,
    conv_clamp=256,
    block_kwargs={},
    mapping_kwargs={},
    epilogue_kwargs={"mbstd_group_size": 2},
)


class _EasyDict(dict):
    """Pickles as dnnlib.util.EasyDict, as the official kwargs objects do."""


def _persistent(module: torch.nn.Module, kwargs: dict, easydict: type) -> object:
    """An object that pickles the way torch_utils.persistence does: reconstructor(meta) with source and __dict__."""
    state = dict(module.__dict__)
    state["_modules"] = {name: _persistent(child, {}, easydict) for name, child in module._modules.items()}
    state["_init_args"] = ()
    state["_init_kwargs"] = easydict(kwargs)
    meta = dict(
        type="class",
        version=6,
        module_src="raise SystemExit('official source must never run')",
        class_name=type(module).__name__,
        state=state,
    )
    reconstruct = sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj

    class Persistent:
        def __reduce__(self):
            return reconstruct, (meta,)

    return Persistent()


def _write_official_like_pickle(path, modules: dict) -> None:
    fake_persistence = types.ModuleType("torch_utils.persistence")
    fake_util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # only referenced by name in the pickle
        raise AssertionError("never called while writing")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake_persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    fake_util.EasyDict = _EasyDict
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update(
        {
            "torch_utils": types.ModuleType("torch_utils"),
            "torch_utils.persistence": fake_persistence,
            "dnnlib": types.ModuleType("dnnlib"),
            "dnnlib.util": fake_util,
        }
    )
    try:
        data = {"training_set_kwargs": _EasyDict(path="ffhq.zip", resolution=16)}
        for name, (module, kwargs) in modules.items():
            data[name] = _persistent(module, kwargs, _EasyDict) if module is not None else None
        with open(path, "wb") as f:
            pickle.dump(data, f)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def test_official_like_snapshot_imports_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    G, D = Generator(**G_KWARGS).eval(), Discriminator(**D_KWARGS).eval()
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for p in G.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "network-snapshot-000000.pkl"
    _write_official_like_pickle(
        path,
        {
            "G": (G, G_KWARGS),
            "D": (D, D_KWARGS),
            "G_ema": (G, G_KWARGS),
            "augment_pipe": (None, {}),
            "D_ema": (D, D_KWARGS),
        },
    )
    snap = load_official_snapshot(path)
    z, c = torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        expected = G(z, c, truncation_psi=0.7, noise_mode="const")
        assert torch.equal(snap.G_ema(z, c, truncation_psi=0.7, noise_mode="const"), expected)
        assert torch.equal(snap.D(expected, c), D(expected, c))
    assert list(snap.G_ema.state_dict()) == list(G.state_dict())
    assert snap.training_set_kwargs == {"path": "ffhq.zip", "resolution": 16}
    assert set(snap.extra) == {"D_ema"} and snap.extra["D_ema"].keys() == D.state_dict().keys()
    assert snap.augment_pipe is None


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": _Evil()}))
    with pytest.raises(UnsafePickleError, match="refusing to load global posix.system"):
        load_official_snapshot(path)
    # a storage payload is itself loaded weights-only, so code hidden there is refused too
    inner = io.BytesIO()
    pickle.dump(_Evil(), inner)
    payload = pickle.dumps({"G": None, "x": _StorageBytes(inner.getvalue())})
    (tmp_path / "evil2.pkl").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError):
        load_official_snapshot(tmp_path / "evil2.pkl")


class _StorageBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)
