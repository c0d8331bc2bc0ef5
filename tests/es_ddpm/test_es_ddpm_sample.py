"""Sampling: a trained tiny model gives finite samples in [-1, 1] with NFE = k; the npz contract (spec §9.9); the
official folder order; the sample CLI with an npz prior, --edit, and one-line errors; the VAE prior's σ²."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from common.config import load_config
from common.data import DatasetError
from es_ddpm.config import ESDDPMConfig, build_diffusion, config_path
from es_ddpm.data import load_folder_samples, load_npz_samples, save_npz_samples
from es_ddpm.diffusion import linear_betas
from es_ddpm.gan import load_gan, train_gan
from es_ddpm.sample import es_sample, load_ddpm
from es_ddpm.sample import main as sample_main
from es_ddpm.train import train_ddpm
from es_ddpm.vae import decoder_variance, load_vae, train_vae


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddpm")
    cfg = load_config(ESDDPMConfig, config_path("tiny"))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch=32, iterations=30, warmup_steps=5),
                              vae=dataclasses.replace(cfg.vae, iterations=40, batch=32))
    train_ddpm(cfg, run / "ddpm")
    train_vae(cfg, run / "vae")
    return cfg, run


def test_trained_model_samples_are_finite_and_in_range(trained):
    cfg, run = trained
    model = load_ddpm(run / "ddpm", cfg)
    diffusion = build_diffusion(cfg.diffusion, cfg.model.learn_sigma, "100")
    x_prior = load_vae(run / "vae", cfg).sample(6, torch.Generator().manual_seed(0))
    raw = diffusion.sample_early_stop(model, x_prior, 20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(raw).all() and raw.abs().max() <= 1.0
    result = es_sample(model, diffusion, x_prior, 200, "ddim", batch=4, generator=torch.Generator().manual_seed(0))
    assert result.nfe == 20 and result.images.dtype == torch.uint8 and result.images.shape == (6, 1, 16, 16)
    assert result.stats["effective_t_prime"] == 193


def test_npz_contract_round_trip(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5])
    path = save_npz_samples(tmp_path / "g.npz", images, labels)
    with np.load(path) as data:
        assert data["arr_0"].dtype == np.uint8 and data["arr_0"].shape == (5, 8, 8, 3)
    x, y = load_npz_samples(path, need_labels=True)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 8, 8)
    assert torch.equal(x, images.float() / 255 * 2 - 1) and torch.equal(y, labels)
    np.savez(tmp_path / "nolabels.npz", images.permute(0, 2, 3, 1).numpy())
    with pytest.raises(DatasetError, match="no 'arr_1' labels but the model is class-conditional"):
        load_npz_samples(tmp_path / "nolabels.npz", need_labels=True)
    np.savez(tmp_path / "float.npz", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(DatasetError, match="arr_0 must be uint8"):
        load_npz_samples(tmp_path / "float.npz")


def test_folder_prior_uses_the_official_order(tmp_path):
    for name, value in (("10_label_3.png", 30), ("2_label_1.png", 20), ("1_label_0.png", 10)):
        Image.fromarray(np.full((4, 4), value, np.uint8)).save(tmp_path / name)
    x = load_folder_samples(tmp_path, channels=3)
    assert x.shape == (3, 3, 4, 4)
    assert [round((v + 1) / 2 * 255) for v in x[:, 0, 0, 0].tolist()] == [10, 20, 30]


def test_sample_cli_npz_prior_edit_and_errors(trained, tmp_path):
    cfg, run = trained
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8)
    save_npz_samples(tmp_path / "prior.npz", images)
    runner = CliRunner()
    args = ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--outdir", str(tmp_path / "out")]
    result = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "prior.npz"),
                                         "--early-stop", "100", "--chain", "250"])
    assert result.exit_code == 0, result.output
    assert "NFE 25" in result.output and "effective_t_prime 97" in result.output
    with np.load(next((tmp_path / "out").glob("*/samples.npz"))) as data:
        assert data["arr_0"].shape == (3, 16, 16, 1) and data["arr_0"].dtype == np.uint8
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "edit.png")
    result = runner.invoke(sample_main, [*args, "--edit", str(tmp_path / "edit.png"), "--num", "2", "--png",
                                         "--early-stop", "50", "--chain", "100"])
    assert result.exit_code == 0 and "NFE 5" in result.output, result.output
    bad = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "missing.npz")])
    assert bad.exit_code == 1 and "no npz of generator samples" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(sample_main, [*args, "--prior", "npz", "--prior-path", str(tmp_path / "prior.npz"),
                                      "--chain", "ddim999"])
    assert bad.exit_code == 1 and "no integer stride gives exactly 999" in bad.output


def test_vae_decoder_variance_follows_the_es_bound():
    abar = np.cumprod(1 - linear_betas(1000))
    cfg = load_config(ESDDPMConfig).vae
    assert decoder_variance(dataclasses.replace(cfg, t_prime=100), abar) == pytest.approx(0.1148, abs=5e-4)
    assert decoder_variance(dataclasses.replace(cfg, t_prime=200), abar) == pytest.approx(0.5174, abs=5e-4)
    assert decoder_variance(dataclasses.replace(cfg, decoder_variance=1.0), abar) == 1.0


def test_dcgan_prior_trains_and_feeds_the_sampler(trained, tmp_path):
    cfg, run = trained
    cfg = dataclasses.replace(cfg, gan=dataclasses.replace(cfg.gan, iterations=5, batch=8))
    stats = train_gan(cfg, tmp_path / "gan")
    assert set(stats) == {"loss_d", "loss_g"} and all(np.isfinite(list(stats.values())))
    x = load_gan(tmp_path / "gan", cfg).sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 16, 16) and x.abs().max() <= 1.0
    result = CliRunner().invoke(sample_main, ["--cfg", "tiny", "--ckpt", str(run / "ddpm"), "--prior", "dcgan",
                                              "--prior-path", str(tmp_path / "gan"), "--num", "3", "--early-stop",
                                              "100", "--chain", "100", "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0 and "3 samples, NFE 10" in result.output, result.output
