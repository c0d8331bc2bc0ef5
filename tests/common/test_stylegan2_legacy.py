"""Official-snapshot import: pickles in the structure the official NVlabs/InsGen/DynamicD/EqGAN-SA code writes
(tests/common/official_pickles.py: persistent records, plain torch.nn children and a real DDP wrapper pickled by
value), read without running code."""

from __future__ import annotations

import io
import os
import pickle
import random
import socket

import pytest
import torch
import torch.distributed as torch_dist
from official_pickles import (
    OFFICIAL_GLOBALS,
    SEL,
    CLHead,
    eqgan_generator,
    eqgan_layer_inputs,
    write_official_pickle,
)

from common.checkpoint import CheckpointError
from common.stylegan2.legacy import UnsafePickleError, load_official_snapshot
from common.stylegan2.method import Method
from common.stylegan2.networks import Discriminator, Generator
from common.stylegan2.snapshot import load_networks

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
TRAINING_SET = {"path": "ffhq.zip", "resolution": 16}


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return module.eval()


def _inputs(c_dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 16), torch.eye(3)[[0, 1, 2, 0]][:, :c_dim]


def _insgen_snapshot(path, c_dim: int = 3, wrap_heads=lambda head: head):
    """What genforce/insgen's training_loop.py pickles: G, D, G_ema, augment_pipe, D_ema, DHead, GHead; its
    train.py builds D's label mapping with 0 layers."""
    torch.manual_seed(0)
    g_kwargs = {**G_KWARGS, "c_dim": c_dim}
    d_kwargs = {**D_KWARGS, "c_dim": c_dim, "mapping_kwargs": {"num_layers": 0}}
    G, D = _perturbed(Generator(**g_kwargs)), _perturbed(Discriminator(**d_kwargs))
    G.mapping.w_avg.normal_()
    D_ema, DHead, GHead = _perturbed(Discriminator(**d_kwargs)), CLHead(), CLHead()
    data = dict(training_set_kwargs=TRAINING_SET, G=G, D=D, G_ema=G, augment_pipe=None, D_ema=D_ema,
                DHead=wrap_heads(DHead), GHead=wrap_heads(GHead))
    kwargs = dict(G=g_kwargs, D=d_kwargs, G_ema=g_kwargs, D_ema=d_kwargs, DHead={"inplanes": 16, "queue_size": 12},
                  GHead={"inplanes": 16, "queue_size": 12})
    found = write_official_pickle(path, data, kwargs, persistent=[CLHead])
    return G, D, D_ema, DHead, found


def test_official_insgen_snapshot_imports_with_identical_outputs(tmp_path):
    path = tmp_path / "network-snapshot-000000.pkl"
    G, D, D_ema, DHead, found = _insgen_snapshot(path)
    assert found <= OFFICIAL_GLOBALS  # the fixture uses only what official pickles contain ...
    assert {("torch.nn.modules.container", "Sequential"), ("torch.nn.modules.linear", "Linear")} <= found  # plain nn
    snap = load_official_snapshot(path)
    z, c = _inputs()
    with torch.no_grad():
        expected = G(z, c, truncation_psi=0.7, noise_mode="const")
        assert torch.equal(snap.G_ema(z, c, truncation_psi=0.7, noise_mode="const"), expected)
        assert torch.equal(snap.D(expected, c), D(expected, c))
        assert torch.equal(snap.extra["D_ema"](expected, c), D_ema(expected, c))  # conditional D, 0 mapping layers
    assert list(snap.G_ema.state_dict()) == list(G.state_dict())
    assert snap.training_set_kwargs == TRAINING_SET
    assert set(snap.states) == {"DHead", "GHead"} and snap.augment_pipe is None
    for key, value in DHead.state_dict().items():
        assert torch.equal(snap.states["DHead"][key], value), key
    assert not snap.G_ema.training and not any(p.requires_grad for p in snap.G_ema.parameters())


def test_insgen_heads_wrapped_in_ddp_import(tmp_path):
    """A real DistributedDataParallel wrapper pickled by value (its config objects and devices included)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        path = tmp_path / "ddp-heads.pkl"
        *_, DHead, found = _insgen_snapshot(path, c_dim=0, wrap_heads=torch.nn.parallel.DistributedDataParallel)
    finally:
        torch_dist.destroy_process_group()
    assert ("torch.nn.parallel.distributed", "DistributedDataParallel") in found and found <= OFFICIAL_GLOBALS
    snap = load_official_snapshot(path)
    assert list(snap.states["DHead"]) == list(DHead.state_dict())
    assert torch.equal(snap.states["DHead"]["mlp.0.weight"], DHead.mlp[0].weight)
    nets = load_networks(path)  # the same file through the project-wide loader
    assert set(nets.extra) == {"D_ema"} and {"DHead", "GHead"} <= set(nets.unbuilt)


def test_dynamicd_discriminator_imports_as_full_width_d_with_its_settings(tmp_path):
    torch.manual_seed(0)
    G, D = _perturbed(Generator(**G_KWARGS)), _perturbed(Discriminator(**D_KWARGS))
    dynamic = {**D_KWARGS, "block_kwargs": {"dynamic_kwargs": {"occupy_ratio": 1.0, "randomly_select": True},
                                            "keepd": 3},
               "epilogue_kwargs": {"mbstd_group_size": 2, "occupy_ratio": 1.0, "randomly_select": True}}
    D.b4.out.occupy_ratio = 0.75  # the training loop writes the current ratio into every dynamic layer
    path = tmp_path / "dynamicd.pkl"
    write_official_pickle(path, dict(training_set_kwargs=TRAINING_SET, G=G, D=D, G_ema=G, augment_pipe=None),
                          dict(G=G_KWARGS, D=dynamic, G_ema=G_KWARGS))
    snap = load_official_snapshot(path)
    img, c = torch.randn(4, 3, 16, 16), torch.eye(3)[[0, 1, 2, 0]]
    with torch.no_grad():
        assert torch.equal(snap.D(img, c), D(img, c))
    assert snap.fork_kwargs["D"] == {
        "block_kwargs.dynamic_kwargs": {"occupy_ratio": 1.0, "randomly_select": True},
        "block_kwargs.keepd": 3,
        "epilogue_kwargs.occupy_ratio": 1.0,
        "epilogue_kwargs.randomly_select": True,
        "occupy_ratio": 0.75,
    }


class _ToyEqGAN(Method):
    """What the eqgan package's build_official does: EqGAN-SA's G from its official kwargs, through the hooks."""

    def build_official(self, name, stub):
        if stub.class_name != "Generator":
            return None
        kwargs = stub.init_kwargs
        kwargs.pop("use_sel")
        return eqgan_generator(kwargs)


def test_eqgan_generator_needs_its_package_and_loads_through_build_official(tmp_path):
    g_kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                    synthesis_kwargs={"channel_base": 256, "channel_max": 16})
    d_kwargs = {**D_KWARGS, "c_dim": 0, "img_resolution": 32}
    torch.manual_seed(0)
    G, D = _perturbed(eqgan_generator(g_kwargs)), Discriminator(**d_kwargs).eval()
    official_g = {**g_kwargs, "use_sel": True}  # the official training loop passes use_sel next to G_kwargs
    path = tmp_path / "eqgan.pkl"
    found = write_official_pickle(path, dict(training_set_kwargs=TRAINING_SET, G=G, D=D, G_ema=G, augment_pipe=None),
                                  dict(G=official_g, D=d_kwargs, G_ema=official_g), persistent=[SEL])
    assert {("torch.nn.modules.instancenorm", "InstanceNorm2d"), ("torch.nn.modules.activation", "LeakyReLU")} <= found
    assert found <= OFFICIAL_GLOBALS
    with pytest.raises(CheckpointError, match="network of the EqGAN-SA fork .use_sel.; only the 'eqgan' package"):
        load_official_snapshot(path)
    nets = load_networks(path)  # the eqgan package builds it (eqgan.method:EqGANSA.build_official)
    from common.stylegan2.evaluate import run_mirror

    assert run_mirror(path) == bool(TRAINING_SET.get("xflip", False))  # eval reads it without building a fork's G
    assert type(nets.G_ema.synthesis).__name__ == "SpatialSynthesisNetwork" and nets.G_ema.synthesis.use_sel
    snap = load_official_snapshot(path, method=_ToyEqGAN())
    z = torch.randn(2, 16)
    heatmaps = {"b8": torch.rand(2, 1, 32, 32), "b16": torch.rand(2, 2, 32, 32), "b32": torch.rand(2, 4, 32, 32)}
    with torch.no_grad():
        ws = G.mapping(z, None)
        expected = G.synthesis(ws, layer_inputs=eqgan_layer_inputs(G, heatmaps), noise_mode="const")
        got = snap.G_ema.synthesis(ws, layer_inputs=eqgan_layer_inputs(snap.G_ema, heatmaps), noise_mode="const")
    assert torch.equal(got, expected)
    assert "synthesis.b32.torgb.sel.output.1.weight" in snap.G_ema.state_dict()  # the official key names
    with torch.no_grad():  # the package's G draws nothing when given the official heatmaps
        ours = nets.G_ema.synthesis(ws, heatmap=heatmaps, noise_mode="const")
    assert torch.equal(ours, expected)


class _Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


class _EvilInsideModule(torch.nn.Module):
    """A real torch.nn class whose pickled state hides a code-running payload."""

    def __init__(self) -> None:
        super().__init__()
        self.payload = _Evil()


class _StorageBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.data,)


class _NnFunction:
    def __reduce__(self):
        return torch.nn.functional.relu, (torch.zeros(1),)


class _LinearCall:
    """REDUCE(torch.nn.Linear, (4, 4)): a torch.nn class called with arguments must not be constructed."""

    def __reduce__(self):
        return torch.nn.Linear, (4, 4)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_would_run_code_is_refused(tmp_path):
    cases = {
        "evil.pkl": {"G": _Evil()},
        "nn_function.pkl": {"G": _NnFunction()},
        "inside_module.pkl": {"G": torch.nn.Sequential(_EvilInsideModule())},
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(pickle.dumps(data))
        with pytest.raises(UnsafePickleError, match="refusing to load global"):
            load_official_snapshot(tmp_path / name)
    inner = io.BytesIO()
    pickle.dump(_Evil(), inner)  # a storage payload is itself loaded weights-only, so code hidden there is refused
    (tmp_path / "evil2.pkl").write_bytes(pickle.dumps({"G": None, "x": _StorageBytes(inner.getvalue())}))
    with pytest.raises(CheckpointError):
        load_official_snapshot(tmp_path / "evil2.pkl")
    (tmp_path / "linear.pkl").write_bytes(pickle.dumps({"G": _LinearCall()}))
    with pytest.raises(CheckpointError, match="LinearStub"):  # the inert record refuses arguments: no nn.Linear
        load_official_snapshot(tmp_path / "linear.pkl")


def test_unreadable_pickles_are_one_line_errors(tmp_path):
    path = tmp_path / "snapshot.pkl"
    _insgen_snapshot(path, c_dim=0)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(random.Random(0).randbytes(256))
    huge = tmp_path / "huge.pkl"  # random bytes can ask for a 2**62-byte object: MemoryError, still one line
    huge.write_bytes(b"\x80\x04\x8e" + (2**62).to_bytes(8, "little"))
    for bad in (truncated, garbage, huge):
        with pytest.raises(CheckpointError) as info:
            load_official_snapshot(bad)
        assert "\n" not in str(info.value) and str(bad) in str(info.value)
    with pytest.raises(CheckpointError, match="no snapshot file"):
        load_official_snapshot(tmp_path / "missing.pkl")
