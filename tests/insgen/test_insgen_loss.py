"""InsGenLoss call graph (spec §9), head updates, the baseline switch and ada_linear."""

from __future__ import annotations

import copy

import pytest
import torch

from common.config import ConfigError, load_config
from common.stylegan2.augment import augment_pipe
from common.stylegan2.networks import Discriminator, Generator
from common.stylegan2.training import Method, lazy_adam, replace_cfg, train
from insgen.config import InsGenConfig, config_path
from insgen.contrastive import InstanceDiscriminationHead
from insgen.loss import InsGenLoss
from insgen.method import InsGen, LinearAugmentSchedule


def _nets():
    torch.manual_seed(0)
    G = Generator(
        z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=1,
        mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64, "channel_max": 8},
    )
    D = Discriminator(
        c_dim=0, img_resolution=8, img_channels=1, channel_base=64, channel_max=8,
        epilogue_kwargs={"mbstd_group_size": 2},
    )
    return G, D


def _loss(weight_fake_on_g: float = 0.1) -> tuple[InsGenLoss, dict[str, int]]:
    G, D = _nets()
    D_ema = copy.deepcopy(D).requires_grad_(False)
    heads = [InstanceDiscriminationHead(8, queue_size=16) for _ in range(2)]
    opts = [lazy_adam(h.mlp.parameters(), 0.002, (0.0, 0.99), 1e-8, 16) for h in heads]
    loss = InsGenLoss(
        G, D, D_ema=D_ema, real_head=heads[0], fake_head=heads[1], real_head_opt=opts[0], fake_head_opt=opts[1],
        view_augment=augment_pipe("bgc", p=0.5), weight_fake_on_g=weight_fake_on_g, r1_gamma=1.0,
    )
    calls = {"D": 0, "D_ema": 0, "G": 0}
    D.register_forward_hook(lambda *a: calls.__setitem__("D", calls["D"] + 1))
    D_ema.register_forward_hook(lambda *a: calls.__setitem__("D_ema", calls["D_ema"] + 1))
    G.synthesis.register_forward_hook(lambda *a: calls.__setitem__("G", calls["G"] + 1))
    return loss, calls


def _batch():
    return torch.randn(4, 1, 8, 8), torch.zeros(4, 0), torch.randn(4, 8), torch.zeros(4, 0)


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Dmain", {"D": 4, "D_ema": 2, "G": 2}),
        ("Gmain", {"D": 2, "D_ema": 1, "G": 1}),
        ("Dreg", {"D": 1, "D_ema": 0, "G": 0}),
        ("Greg", {"D": 0, "D_ema": 0, "G": 1}),
    ],
)
def test_network_calls_per_phase(phase, expected):
    loss, calls = _loss()
    module = loss.D if phase.startswith("D") else loss.G
    module.requires_grad_(True)
    loss.accumulate_gradients(phase, *_batch(), gain=1.0)
    assert calls == expected


def test_no_cl_on_g_drops_the_generator_term():
    loss, calls = _loss(weight_fake_on_g=0.0)
    loss.G.requires_grad_(True)
    loss.accumulate_gradients("Gmain", *_batch(), gain=1.0)
    assert calls == {"D": 1, "D_ema": 0, "G": 1}


def test_heads_step_and_queues_fill_in_dmain_only():
    loss, _ = _loss()
    real_before = [p.clone() for p in loss.real_head.mlp.parameters()]
    fake_before = [p.clone() for p in loss.fake_head.mlp.parameters()]
    loss.G.requires_grad_(True)
    loss.accumulate_gradients("Gmain", *_batch(), gain=1.0)
    assert all(torch.equal(a, b) for a, b in zip(fake_before, loss.fake_head.mlp.parameters()))
    assert int(loss.fake_head.queue_ptr) == 0 and int(loss.real_head.queue_ptr) == 0
    assert all(p.grad is None for p in loss.fake_head.mlp.parameters())  # C_G^f reaches G only
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.G.parameters())
    loss.G.requires_grad_(False)
    loss.D.requires_grad_(True)
    loss.accumulate_gradients("Dmain", *_batch(), gain=1.0)
    assert int(loss.real_head.queue_ptr) == 4 and int(loss.fake_head.queue_ptr) == 4
    assert not all(torch.equal(a, b) for a, b in zip(real_before, loss.real_head.mlp.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(fake_before, loss.fake_head.mlp.parameters()))
    for name in ("Loss/D_cl", "Loss/G_cl", "Loss/G_cl_on_g"):
        assert torch.isfinite(loss.stats[name])


def test_generator_term_changes_g_gradients_by_its_weight():
    grads = {}
    for weight in (0.0, 0.1):
        loss, _ = _loss(weight_fake_on_g=weight)
        loss.G.requires_grad_(True)
        torch.manual_seed(5)
        loss.accumulate_gradients("Gmain", *_batch(), gain=1.0)
        grads[weight] = torch.cat([p.grad.flatten() for p in loss.G.synthesis.parameters() if p.grad is not None])
    assert not torch.allclose(grads[0.0], grads[0.1])


def _tiny(**sections) -> InsGenConfig:
    cfg = load_config(InsGenConfig, config_path("tiny"))
    base = {
        "data": {"resolution": 8},
        "G": {"channel_base": 64, "channel_max": 8, "z_dim": 8, "w_dim": 8},
        "D": {"channel_base": 64, "channel_max": 8},
        "train": {"batch": 8, "total_kimg": 1, "kimg_per_tick": 1, "metrics": ["none"]},
        "probe": {"every": 0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return replace_cfg(cfg, **base)


def _weights(state, names=("G", "D", "G_ema")) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n in names for k, v in state.modules[n].state_dict().items()}


def test_baseline_switch_is_plain_stylegan2_ada(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _tiny(insgen={"enabled": False})
    off = train(cfg, tmp_path / "off", method=InsGen(), max_iterations=3)
    plain = train(cfg, tmp_path / "plain", method=Method(), max_iterations=3)
    assert set(off.modules) == {"G", "D", "G_ema"}
    a, b = _weights(off), _weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)
    on = train(_tiny(), tmp_path / "on", method=InsGen(), max_iterations=3)
    assert {"D_ema", "real_head", "fake_head", "view_augment"} <= set(on.modules)
    assert not torch.equal(_weights(on)["D.b4.out.weight"], a["D.b4.out.weight"])


def test_d_ema_follows_d_once_per_iteration(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _tiny(insgen={"momentum": 0.9})
    method = InsGen()
    state = train(cfg, tmp_path / "a", method=method, max_iterations=1)
    D, D_ema = state.modules["D"], state.modules["D_ema"]
    before = [p.clone() for p in D_ema.parameters()]
    method.before_iteration(state)
    for p_ema, p, b in zip(D_ema.parameters(), D.parameters(), before):
        assert torch.allclose(p_ema, 0.9 * b + 0.1 * p)


def test_head_optimizers_use_their_networks_lazy_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    state = train(_tiny(optim={"g_lr": 0.004, "d_lr": 0.002}), tmp_path / "a", method=InsGen(), max_iterations=1)
    real, fake = state.optimizers["real_head"].param_groups[0], state.optimizers["fake_head"].param_groups[0]
    assert real["lr"] == pytest.approx(0.002 * 16 / 17) and real["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert fake["lr"] == pytest.approx(0.004 * 4 / 5) and fake["betas"][1] == pytest.approx(0.99 ** (4 / 5))


def test_ada_linear_schedule():
    pipe = augment_pipe("bgc")
    schedule = LinearAugmentSchedule(pipe, target=0.6, interval=4, total_kimg=10, batch_size=32)
    schedule.step(3)
    assert float(pipe.p) == 0  # only every 4th iteration
    schedule.step(4)
    assert float(pipe.p) == pytest.approx(0.6 * 0.128 / 10)
    schedule.step(312)  # 9.984 kimg
    assert float(pipe.p) == pytest.approx(0.6 * 9.984 / 10)


def test_ada_linear_replaces_the_adaptive_schedule(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    cfg = _tiny(augment={"mode": "ada"}, insgen={"ada_linear": True, "view_pipe": None})
    state = train(cfg, tmp_path / "a", method=InsGen(), max_iterations=4)
    assert isinstance(state.ada, LinearAugmentSchedule)
    assert float(state.augment_pipe.p) == pytest.approx(0.6 * 0.032 / 1)


def test_setting_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ConfigError, match="insgen.view_pipe"):
        train(_tiny(insgen={"view_pipe": None}), tmp_path / "a", method=InsGen(), max_iterations=1)
    with pytest.raises(ConfigError, match="set insgen.real_queue_size"):
        cfg = _tiny(data={"subset": 10}, insgen={"real_queue_size": None, "fake_queue_size": None})
        train(cfg, tmp_path / "b", method=InsGen(), max_iterations=1)
    with pytest.raises(ConfigError, match="ada_linear needs augment.mode=ada"):
        train(_tiny(insgen={"ada_linear": True}), tmp_path / "c", method=InsGen(), max_iterations=1)
