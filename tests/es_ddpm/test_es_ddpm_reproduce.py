"""The tiny reproduction: the --smoke run writes a report with every section, and the conclusions state wins and
losses as the numbers say."""

from __future__ import annotations

import json

from click.testing import CliRunner

from es_ddpm.reproduce import TINY_ROWS, Row, conclusions, main


def test_smoke_report_has_every_section(tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["--smoke", "--outdir", str(out), "--workdir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for section in ("## Setup", "## Results", "## What the numbers show", "## Samples", "## Proxy-FD vs NFE",
                    "## DDPM training loss"):
        assert section in text
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == len(TINY_ROWS)  # every row ran, the StyleGAN2 prior's included
    nfe = {(r["row"], r["t_prime"], r["chain"]): r["nfe"] for r in rows}
    assert nfe["DDPM, full chain from N(0, I)", None, "1000"] == 1000
    assert nfe["ES-DDPM from VAE", 200, "100"] == 20 and nfe["ES-DDIM from DCGAN", 100, "ddim100"] == 10
    assert all(r["fd"] > 0 for r in rows)
    pngs = ("fd_vs_nfe.png", "samples_es_vae.png", "samples_es_dcgan.png", "samples_es_stylegan2.png",
            "samples_noise_1000.png")
    for png in pngs:
        assert (out / png).stat().st_size > 0


def test_conclusions_state_wins_and_losses():
    full = (TINY_ROWS[4], {"fd": 25.0, "nfe": 1000})
    ddim = (Row("DDIM", "noise", None, "ddim25", "ddim"), {"fd": 28.0, "nfe": 25})
    vae = (Row("VAE alone", "vae", None, None), {"fd": 180.0, "nfe": 0})
    es = (Row("ES-DDPM", "vae", 300, "100"), {"fd": 33.0, "nfe": 30})
    lines = conclusions([full, ddim, vae, es])
    assert "0.18x" in lines[0] and "improves the prior" in lines[0]
    assert lines[1].startswith("It does not beat the full 1000-step DDPM (25.0) with 33x fewer NFE")
    assert "does not beat the best sampler from noise" in lines[2]
    assert "hardly changes the prior" in conclusions([(vae[0], {"fd": 35.0, "nfe": 0}), es])[0]
    better = (Row("ES-DDPM", "vae", 300, "100"), {"fd": 20.0, "nfe": 30})
    lines = conclusions([full, ddim, vae, better])
    assert lines[1].startswith("It beats the full") and "it beats the best sampler" in lines[2]
