"""The pretrained tiny source GAN: the official tiny32 widths, trained deterministically once and then cached."""

from __future__ import annotations

import torch

from common.stylegan2.config import resolve
from common.stylegan2.method import Method, NetworkShape
from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan, source_config, source_gan_path
from common.stylegan2.snapshot import load_networks


def test_source_gan_has_the_spec_widths():
    nets = Method().build_networks(resolve(source_config(), 32, gpus=1), NetworkShape(32, 3, 0))
    assert sum(p.numel() for p in nets.G.parameters()) == 263_987  # spec oneshot_gan.md / ghfeat.md §8
    assert sum(p.numel() for p in nets.D.parameters()) == 288_993
    assert sum(nets.G.synthesis.style_dims().values()) == 640  # 9 x 64 + 2 x 32 styles
    cfg = source_config()
    assert (cfg.data.source, cfg.data.resolution, cfg.data.num_images) == ("shapes", 32, 2000)


def test_source_gan_is_trained_once_deterministically_and_cached(tmp_path, monkeypatch, capsys):
    settings = SourceTraining(total_kimg=0.032)  # two iterations of batch 16
    assert source_gan_path(settings) != source_gan_path(SourceTraining())  # the budget is part of the key
    states = []
    for run in ("a", "b"):
        monkeypatch.setenv("GENFORCE_DATA_DIR", str(tmp_path / run))
        path = pretrained_source_gan(settings)
        assert path.parent == tmp_path / run / "pretrained" and path.with_suffix(".png").is_file()
        assert "training the tiny source GAN once" in capsys.readouterr().out
        assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary run left
        states.append({k: v for name, m in load_networks(path).modules().items()
                       for k, v in ((f"{name}.{key}", value) for key, value in m.state_dict().items())})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # same machine, same weights
    mtime = path.stat().st_mtime_ns
    assert pretrained_source_gan(settings) == path and path.stat().st_mtime_ns == mtime  # cached: not retrained
    assert capsys.readouterr().out == ""
