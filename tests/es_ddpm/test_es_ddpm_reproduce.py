"""The tiny reproduction: the --smoke run writes a report with every section, and the conclusions state wins and
losses as the numbers say."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from es_ddpm.reproduce import TINY_ROWS, Row, conclusions, main, sample_metrics


def test_smoke_report_has_every_section(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["--smoke", "--outdir", str(out), "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for section in ("## Setup", "## Results", "## What the numbers show", "## Samples", "## Mode coverage",
                    "## Proxy-FD vs NFE", "## DDPM training loss"):
        assert section in text
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == len(TINY_ROWS)  # every row ran, the StyleGAN2 prior's included
    nfe = {(r["row"], r["t_prime"], r["chain"]): r["nfe"] for r in rows}
    assert nfe["DDPM, full chain from N(0, I)", None, "1000"] == 1000
    assert nfe["ES-DDPM from VAE", 200, "100"] == 20 and nfe["ES-DDIM from DCGAN", 100, "ddim100"] == 10
    assert all(r["fd"] > 0 and [s["seed"] for s in r["seeds"]] == [0, 1] for r in rows)  # smoke: two seeds
    pngs = ("fd_vs_nfe.png", "class_shares.png", "samples_es_vae.png", "samples_es_dcgan.png",
            "samples_es_stylegan2.png",
            "samples_noise_1000.png")
    for png in pngs:
        assert (out / png).stat().st_size > 0


def _res(fd: list[float], nfe: int, shares: tuple[float, ...] = (0.1,) * 10) -> dict[str, object]:
    entropy = float(-sum(p * np.log(p) for p in shares if p > 0))
    return {"fd": fd, "nfe": nfe, "entropy": [entropy] * len(fd), "class_tv": [0.0] * len(fd),
            "seeds": [{"seed": i, "shares": list(shares)} for i in range(len(fd))]}


def test_conclusions_state_wins_and_losses_with_seed_counts():
    full = (TINY_ROWS[4], _res([25.0, 26.0, 24.0], 1000))
    ddim = (Row("DDIM", "noise", None, "ddim25", "ddim"), _res([28.0, 27.0, 29.0], 25))
    vae = (Row("VAE alone", "vae", None, None), _res([180.0, 181.0, 179.0], 0))
    es = (Row("ES-DDPM", "vae", 300, "100"), _res([33.0, 32.0, 34.0], 30))
    lines = conclusions([full, ddim, vae, es])
    assert "33.0 ± 1.0 vs 180.0 ± 1.0" in lines[0] and "0.18x, lower on 3/3 seeds" in lines[0]
    assert "improves the prior" in lines[0]
    assert lines[1].startswith("It does not beat the full 1000-step DDPM (25.0 ± 1.0) with 33x fewer NFE")
    assert "lower on 0/3 seeds" in lines[1]
    assert "does not beat the best sampler from noise" in lines[2]
    # a mean gain that does not hold on every seed is not called an improvement
    mixed = (Row("VAE alone", "vae", None, None), _res([35.0, 31.0, 40.0], 0))
    assert "hardly changes the prior" in conclusions([mixed, es])[0]
    better = (Row("ES-DDPM", "vae", 300, "100"), _res([20.0, 21.0, 19.0], 30))
    lines = conclusions([full, ddim, vae, better])
    assert lines[1].startswith("It beats the full") and "it beats the best sampler" in lines[2]


def test_coverage_line_reports_entropy_distance_and_the_rarest_digit():
    data = _res([12.0, 13.0, 14.0], 0)
    skewed = (0.01, 0.19) + (0.1,) * 8
    alone = _res([280.0, 290.0, 285.0], 0, skewed)
    alone["class_tv"] = [0.09, 0.09, 0.09]
    es = _res([170.0, 175.0, 172.0], 20, (0.05, 0.15) + (0.1,) * 8)
    es["class_tv"] = [0.05, 0.04, 0.06]
    lines = conclusions([(TINY_ROWS[0], data), (TINY_ROWS[3], alone), (Row("ES-DDPM", "stylegan2", 200, "100"), es)])
    coverage = next(line for line in lines if line.startswith("Mode coverage, StyleGAN2"))
    assert "real digits 2.30 ± 0.00" in coverage and "0.090 ± 0.000 -> 0.050 ± 0.010 (lower on 3/3 seeds)" in coverage
    assert "its rarest digit 0: share 0.01 -> 0.05 (real 0.10)" in coverage


def test_sample_metrics_class_entropy_and_shares():
    from common.data.synthetic import digits
    from common.metrics import ProxyExtractor, load_proxy

    images, labels = digits(16)
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    net = load_proxy()
    extractor = ProxyExtractor(net)
    reference = extractor.extract(images[:200]).numpy()
    ones = images[torch.from_numpy(labels == 1)][:60]
    single = sample_metrics(ones, net, extractor, reference)
    assert single["shares"][1] > 0.9 and single["entropy"] < 0.4  # one digit: entropy near 0
    spread = sample_metrics(images[:500], net, extractor, reference)
    expected = torch.bincount(torch.from_numpy(labels[:500]), minlength=10).double() / 500
    assert spread["entropy"] == pytest.approx(float(-(expected * expected.log()).sum()), abs=0.05)  # ≈ ln 10
    assert sum(spread["shares"]) == pytest.approx(1.0)
