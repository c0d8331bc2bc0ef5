"""Paper rows build the official architectures (spec insgen.md §3, §9) with the official InsGen defaults."""

from __future__ import annotations

import pytest
import torch

from common.config import load_config
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import resolve
from common.stylegan2.training import replace_cfg
from insgen.config import InsGenConfig, config_names, config_path
from insgen.contrastive import HEAD_FEATURES, InstanceDiscriminationHead
from insgen.method import head_channels, queue_sizes


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_every_paper_row_ships():
    assert config_names() == ["afhq_cat", "afhq_dog", "afhq_wild", "ffhq10k", "ffhq140k", "ffhq2k", "tiny"]


@pytest.mark.parametrize(
    ("row", "resolution", "g_params", "d_params"),
    [("ffhq2k", 256, 24_767_458, 24_001_089), ("afhq_cat", 512, 30_276_583, 28_982_849)],
)
def test_paper_rows_build_the_official_networks(row, resolution, g_params, d_params):
    cfg = resolve(load_config(InsGenConfig, config_path(row)), resolution, gpus=8)
    G = build_generator(cfg, resolution, 3, 0)
    D = build_discriminator(cfg, resolution, 3, 0)
    assert (_count(G), _count(D)) == (g_params, d_params)
    assert head_channels(cfg) == 512
    assert _count(InstanceDiscriminationHead(head_channels(cfg)).mlp) == 328_320
    assert (cfg.train.batch, cfg.train.batch_gpu, cfg.train.total_kimg) == (64, 8, 25000)
    ic = cfg.insgen
    assert ic.enabled and (ic.temperature, ic.momentum) == (0.2, 0.999)
    assert (ic.weight_real, ic.weight_fake, ic.weight_fake_on_g, ic.latent_perturbation) == (1.0, 1.0, 0.1, 0.15)
    assert ic.view_pipe is None and not ic.ada_linear and not ic.no_cl_on_g
    assert cfg.augment.mode == "ada" and cfg.data.mirror


@pytest.mark.parametrize(
    ("row", "dataset_len", "queue"),
    [("ffhq2k", 4000, 200), ("ffhq10k", 20000, 1000), ("ffhq140k", 140000, 7000), ("afhq_cat", 10306, 514),
     ("afhq_dog", 9478, 472), ("afhq_wild", 9476, 472)],
)
def test_default_queue_sizes_of_the_rows(row, dataset_len, queue):
    """dataset_len counts x-flipped copies (the dataset after --subset and --mirror)."""
    cfg = load_config(InsGenConfig, config_path(row))
    assert queue_sizes(cfg, dataset_len) == (queue, queue)


def test_limited_data_rows_subset_the_full_dataset():
    assert load_config(InsGenConfig, config_path("ffhq2k")).data.subset == 2000
    assert load_config(InsGenConfig, config_path("ffhq10k")).data.subset == 10000
    assert load_config(InsGenConfig, config_path("ffhq140k")).data.subset is None


def test_heads_follow_the_discriminator_width():
    """The official train.py hard-codes inplanes 512; a cmax-128 D gives [N, 128, 4, 4] features (spec §3)."""
    cfg = load_config(InsGenConfig, config_path("tiny"))
    cfg = resolve(replace_cfg(cfg, D={"channel_base": 2048, "channel_max": 128}), 32, gpus=1)
    torch.manual_seed(0)
    D = build_discriminator(cfg, 32, 3, 0)
    assert _count(D) == 1_153_473  # spec §3 / §9: tiny res32, cbase 2048, cmax 128
    images = torch.randn(4, 3, 32, 32)
    logits, feats = D(images, None, return_features=[HEAD_FEATURES])
    feats = feats[HEAD_FEATURES]
    assert logits.shape == (4, 1) and feats.shape == (4, 128, 4, 4) == (4, head_channels(cfg), 4, 4)
    assert torch.equal(logits, D(images, None))
