"""GenDA's modules and arms on the shared loop: identity start, frozen sets, truncation, counts, EWC, resume."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from common.config import ConfigError, load_config
from common.data.synthetic import sample_photos
from common.stylegan2.config import resolve
from common.stylegan2.method import Method, NetworkShape
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan
from common.stylegan2.snapshot import load_networks
from common.stylegan2.training import replace_cfg, train
from oneshot_gan.config import GenDAConfig, config_names, config_path
from oneshot_gan.genda import AdaptedMapping, AttributeAdaptor
from oneshot_gan.method import GenDA
from oneshot_gan.target import target_dataset


@pytest.fixture(scope="module")
def source() -> str:
    """A tiny source GAN (two iterations of the shapes32 preset: the real architecture, cached in data/)."""
    return str(pretrained_source_gan(SourceTraining(total_kimg=0.032)))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("target") / "china.png"
    Image.fromarray(sample_photos(64)["china.jpg"]).save(path)
    return str(path)


def tiny_cfg(source: str, photo: str, iterations: int, **genda) -> GenDAConfig:
    sets = [f"data.path={target_dataset(photo, 32)}", f"train.init_from={source}"]
    sets += [f"genda.{k}={v}" for k, v in genda.items()]
    if genda.get("method", "genda") != "genda":
        sets += ["optim.g_lr=0.002", "optim.d_lr=0.002"]
    if genda.get("method") == "freezed":
        sets.append("D.freeze_layers=4")
    cfg = load_config(GenDAConfig, config_path("tiny"), sets)
    return replace_cfg(cfg, train={"total_kimg": iterations * cfg.train.batch / 1000, "kimg_per_tick": 0.032})


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_parameter_counts_tiny_and_paper_scale():
    """Spec §9.3: W adaptor 2 w_dim, W+ num_ws x 2 w_dim, head C + 1; the networks are the source's."""
    tiny = resolve(load_config(GenDAConfig, config_path("tiny"), ["genda.adaptor=w"]), 32, gpus=1)
    nets = GenDA().build_networks(tiny, NetworkShape(32, 3, 0))
    assert _params(nets.G.mapping.adaptor) == 128 and _params(nets.D.head) == 65
    assert _params(nets.G) - 128 == 263_987 and _params(nets.D.backbone) == 288_993
    assert _params(AttributeAdaptor(64, nets.G.num_ws, "wplus")) == 1_024
    paper = resolve(load_config(GenDAConfig, config_path("ffhq_babies")), 256, gpus=1)
    nets = GenDA().build_networks(paper, NetworkShape(256, 3, 0))
    assert _params(nets.G.mapping.adaptor) == 1_024 and _params(nets.D.head) == 513
    assert _params(AttributeAdaptor(512, nets.G.num_ws, "wplus")) == 14_336 and nets.G.num_ws == 14
    assert _params(nets.G) - 1_024 == 24_767_458 and _params(nets.D.backbone) == 24_001_089  # paper256 (base §3.3)


def test_identity_adaptor_leaves_the_source_output_unchanged(source, photo):
    cfg = resolve(tiny_cfg(source, photo, 1), 32, gpus=1)
    nets = GenDA().build_networks(cfg, NetworkShape(32, 3, 0))
    nets.G_ema = GenDA().build_networks(cfg, NetworkShape(32, 3, 0)).G
    src = load_networks(source)
    GenDA().init_networks(nets, src)
    z = torch.randn([6, 64], generator=torch.Generator().manual_seed(0))
    c = torch.zeros([6, 0])
    for G in (nets.G.eval(), nets.G_ema.eval()):
        assert torch.equal(G(z, c, noise_mode="const"), src.G_ema(z, c, noise_mode="const"))  # max abs diff 0
        assert torch.equal(G(z, c, truncation_psi=0.5, noise_mode="const"),
                           src.G_ema(z, c, truncation_psi=0.5, noise_mode="const"))


def test_training_truncation_is_the_formula_and_only_in_training():
    torch.manual_seed(0)
    base = load_networks_free_mapping()
    base.w_avg.copy_(torch.randn(16))
    mapping = AdaptedMapping(base, AttributeAdaptor(16, 3, "w"), psi_train=0.7)
    z = torch.randn([5, 8])
    w = base(z, None, skip_w_avg_update=True)
    w_avg_before = base.w_avg.clone()
    trained = mapping.train()(z, None)
    assert torch.allclose(trained, base.w_avg + 0.7 * (w - base.w_avg), atol=1e-6)  # w_avg + psi (w - w_avg)
    assert torch.equal(base.w_avg, w_avg_before)  # the source's w_avg never moves
    assert torch.equal(mapping.eval()(z, None), w)  # evaluation samples at psi = 1
    assert torch.allclose(mapping.eval()(z, None, truncation_psi=0.5), base.w_avg + 0.5 * (w - base.w_avg), atol=1e-6)
    with torch.no_grad():
        mapping.adaptor.scale.fill_(2.0)
        mapping.adaptor.shift.fill_(0.5)
    assert torch.allclose(mapping.eval()(z, None), 2 * w + 0.5)  # w' = a w + b after the truncation


def load_networks_free_mapping():
    from common.stylegan2.networks import MappingNetwork

    return MappingNetwork(z_dim=8, c_dim=0, w_dim=16, num_ws=3, num_layers=2)


def test_genda_trains_only_the_adaptor_and_the_head(source, photo, tmp_path):
    cfg = tiny_cfg(source, photo, 3)
    src = load_networks(source)
    state = train(cfg, tmp_path / "run", method=GenDA())
    G, D = state.G, state.D
    for name, value in G.state_dict().items():
        if "adaptor" not in name:
            expected = src.G_ema.state_dict()[name.replace("mapping.base.", "mapping.")]
            assert torch.equal(value, expected), name  # weights and w_avg of the frozen G unchanged
    for name, value in D.backbone.state_dict().items():
        assert torch.equal(value, src.D.state_dict()[name]), name
    trained = {id(p) for p in [*G.mapping.adaptor.parameters(), *D.head.parameters()]}
    for module in (G, D):
        for name, p in module.named_parameters():
            assert not p.requires_grad, name
            if id(p) not in trained:
                assert p.grad is None, name
    assert not torch.equal(G.mapping.adaptor.scale, torch.ones_like(G.mapping.adaptor.scale))  # the adaptor moved
    assert G.mapping.adaptor.scale.shape == (G.num_ws, 64)  # tiny: W+
    nets = load_networks(tmp_path / "run")  # the snapshot rebuilds GenDA's G and D
    assert isinstance(nets.G_ema.mapping, AdaptedMapping) and torch.equal(nets.D.head.weight, D.head.weight)


@pytest.mark.parametrize("method", ["finetune", "freezed"])
def test_baselines_train_g_and_the_unfrozen_d(source, photo, tmp_path, method):
    cfg = tiny_cfg(source, photo, 2, method=method)
    src = load_networks(source)
    state = train(cfg, tmp_path / "run", method=GenDA())
    assert not torch.equal(state.G.synthesis.b32.conv1.weight, src.G_ema.synthesis.b32.conv1.weight)
    frozen = torch.equal(state.D.b32.conv0.weight, src.D.b32.conv0.weight)  # first block: Freeze-D indices 0-3
    assert frozen == (method == "freezed")
    assert not torch.equal(state.D.b8.conv1.weight, src.D.b8.conv1.weight)


def test_ewc_fisher_and_penalty_are_the_formulas(source, photo, tmp_path):
    cfg = resolve(tiny_cfg(source, photo, 1, method="ewc"), 32, gpus=1)
    method = GenDA()
    nets = method.build_networks(cfg, NetworkShape(32, 3, 0))
    nets.G_ema = Method().build_networks(cfg, NetworkShape(32, 3, 0)).G
    src = load_networks(source)
    method.init_networks(nets, src)
    anchor, G, D = nets.extra["ewc"], nets.G, nets.D
    # F = mean over batches of squared gradients of softplus(-D(G(z))) at the source weights
    gen = torch.Generator().manual_seed(cfg.seed)
    params = list(G.parameters())
    expected = [torch.zeros_like(p) for p in params]
    for _ in range(cfg.genda.fisher_batches):
        z = torch.randn([cfg.train.batch_gpu, 64], generator=gen)
        c = torch.zeros([len(z), 0])
        img = G.synthesis(G.mapping(z, c, skip_w_avg_update=True), noise_mode="const")
        loss = torch.nn.functional.softplus(-D(img, c)).mean()
        for e, g in zip(expected, torch.autograd.grad(loss, params)):
            e.add_(g.square() / cfg.genda.fisher_batches)
    for i, e in enumerate(expected):
        assert torch.allclose(getattr(anchor, f"fisher{i}"), e, rtol=1e-5, atol=1e-12)
    assert float(anchor.penalty(G).detach()) == 0.0  # at the source weights
    with torch.no_grad():
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    penalty = anchor.penalty(G)
    grads = torch.autograd.grad(penalty, params)
    for i, (p, g) in enumerate(zip(params, grads)):  # d/dtheta F (theta - theta_S)^2 = 2 F (theta - theta_S)
        assert torch.allclose(g, 2 * getattr(anchor, f"fisher{i}") * (p - getattr(anchor, f"source{i}")), atol=1e-12)


@pytest.mark.parametrize("method", ["genda", "ewc"])
def test_resume_equals_an_uninterrupted_run(source, photo, tmp_path, method):
    cfg = tiny_cfg(source, photo, 4, method=method)
    whole = train(cfg, tmp_path / "whole", method=GenDA())
    train(cfg, tmp_path / "parts", method=GenDA(), max_iterations=2)
    resumed = train(cfg, tmp_path / "parts", method=GenDA(), resume=tmp_path / "parts")
    assert resumed.batch_idx == whole.batch_idx == 4
    for name in whole.modules:
        a, b = whole.modules[name].state_dict(), resumed.modules[name].state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for name in whole.optimizers:  # Adam moments too: the schedule continues exactly
        a, b = whole.optimizers[name].state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[i][k], b[i][k]) for i in a for k in a[i]), name


def test_config_refuses_inconsistent_arms():
    with pytest.raises(ConfigError, match="needs D.freeze_layers > 0"):
        load_config(GenDAConfig, config_path("tiny"), ["genda.method=freezed"])
    with pytest.raises(ConfigError, match="use genda.method=freezed"):
        load_config(GenDAConfig, config_path("tiny"), ["genda.method=finetune", "D.freeze_layers=4"])
    with pytest.raises(ConfigError, match="psi_train"):
        load_config(GenDAConfig, config_path("tiny"), ["genda.psi_train=0"])
    with pytest.raises(ConfigError, match="genda.method"):
        load_config(GenDAConfig, config_path("tiny"), ["genda.method=cdc"])


def test_every_config_row_loads():
    for name in config_names():
        cfg = load_config(GenDAConfig, config_path(name))
        assert cfg.methods == ["oneshot_gan"] and cfg.data.mirror and cfg.train.ema_kimg == 0
        assert dataclasses.asdict(cfg)["genda"]["method"] in ("genda", "finetune", "freezed", "ewc")


def test_source_from_an_official_stylegan2_ada_pickle(source, photo, tmp_path):
    """A source written in the NVlabs pickle structure (G, D, G_ema persistent records) goes through the importer."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
    from official_pickles import write_official_pickle

    nets = load_networks(source)
    g_kwargs = dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=32, img_channels=3, mapping_kwargs={"num_layers": 2},
                    synthesis_kwargs={"channel_base": 1024, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": None})
    d_kwargs = dict(c_dim=0, img_resolution=32, img_channels=3, architecture="resnet", channel_base=1024,
                    channel_max=64, num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                    epilogue_kwargs={"mbstd_group_size": 4})
    path = tmp_path / "network-snapshot-000080.pkl"
    write_official_pickle(path, dict(training_set_kwargs={}, G=nets.G, D=nets.D, G_ema=nets.G_ema, augment_pipe=None),
                          dict(G=g_kwargs, D=d_kwargs, G_ema=g_kwargs))
    cfg = replace_cfg(tiny_cfg(source, photo, 1), train={"init_from": str(path)})
    state = train(cfg, tmp_path / "run", method=GenDA())
    for key, value in nets.G_ema.synthesis.state_dict().items():
        assert torch.equal(state.G.synthesis.state_dict()[key], value), key
    for key, value in nets.D.state_dict().items():
        assert torch.equal(state.D.backbone.state_dict()[key], value), key
