"""common.stylegan2.bench: the official arm gets train.py's kwargs, arms alternate per call, iteration amortisation."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from common.stylegan2 import bench

# A stand-in for a stylegan2-ada-pytorch clone: official constructor signatures, our modules underneath, and a
# log of every constructor call and loss phase.
_FAKE_CLONE = {
    "training/__init__.py": "",
    "training/networks.py": """
        from common.stylegan2 import networks as ours
        CALLS = []
        def Generator(**kwargs):
            CALLS.append(("G", kwargs))
            return ours.Generator(**kwargs)
        def Discriminator(**kwargs):
            CALLS.append(("D", kwargs))
            return ours.Discriminator(**kwargs)
    """,
    "training/augment.py": "from common.stylegan2.augment import AugmentPipe\n",
    "training/loss.py": """
        from training.networks import CALLS
        class StyleGAN2Loss:
            def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, style_mixing_prob=0.9,
                         r1_gamma=10, pl_batch_shrink=2, pl_decay=0.01, pl_weight=2):
                CALLS.append(("loss", dict(style_mixing_prob=style_mixing_prob, r1_gamma=r1_gamma,
                                           pl_batch_shrink=pl_batch_shrink, pl_decay=pl_decay, pl_weight=pl_weight,
                                           augment_p=float(augment_pipe.p))))
            def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
                CALLS.append(("phase", phase, tuple(real_img.shape), tuple(gen_z.shape), sync, gain))
    """,
}


@pytest.fixture
def fake_clone(tmp_path: Path):
    for rel, text in _FAKE_CLONE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    yield tmp_path
    for key in [k for k in sys.modules if k == "training" or k.startswith("training.")]:
        del sys.modules[key]


def test_official_arm_gets_train_py_kwargs_and_alternates_with_ours(fake_clone: Path):
    base, res, channels = bench.bench_configs()["micro16"]
    cfg = bench.bench_setup(base, res, batch=4)
    arms = {"ours": bench.our_arm(cfg, res, channels, torch.device("cpu")),
            "official": bench.official_arm(fake_clone, cfg, res, channels, torch.device("cpu"))}
    calls = sys.modules["training.networks"].CALLS
    # official train.py for the spec §9 micro16 width: cbase 1024, cmax 64, z = w = 64, 2 mapping layers, fp32
    assert calls[0] == ("G", {"z_dim": 64, "c_dim": 0, "w_dim": 64, "img_resolution": 16, "img_channels": 3,
                              "mapping_kwargs": {"num_layers": 2},
                              "synthesis_kwargs": {"channel_base": 1024, "channel_max": 64, "num_fp16_res": 0,
                                                   "conv_clamp": None}})
    assert calls[1][0] == "D" and calls[1][1]["epilogue_kwargs"] == {"mbstd_group_size": 4, "mbstd_num_channels": 1}
    assert calls[1][1]["architecture"] == "resnet" and calls[1][1]["channel_base"] == 1024
    assert calls[2] == ("loss", {"style_mixing_prob": 0.9, "r1_gamma": 0.01, "pl_batch_shrink": 2, "pl_decay": 0.01,
                                 "pl_weight": 2.0, "augment_p": pytest.approx(0.3)})
    del calls[:]
    ours_accumulate, ours_modules = arms["ours"]

    def logged_ours(phase, batch):
        calls.append(("ours", phase))
        ours_accumulate(phase, batch)

    arms["ours"] = (logged_ours, ours_modules)

    times = bench.time_arms(arms, cfg, res, channels, batch=4, repeats=2, device=torch.device("cpu"))

    # per phase: warm-up + 2 timed calls, ours and official taking turns, the official one on the full batch of 4
    # images and latents with sync on and gain 1
    official_call = lambda p: ("phase", p, (4, 3, 16, 16), (4, 64), True, 1.0)  # noqa: E731
    assert calls == [c for p in bench.PHASES for _ in range(3) for c in (("ours", p), official_call(p))]
    for t in times.values():
        expected = t["Gmain_cpu"] + t["Greg_cpu"] / 4 + t["Dmain_cpu"] + t["Dreg_cpu"] / 16
        assert t["iter_cpu"] == pytest.approx(expected)
    assert times["ours"]["Dreg_cpu"] > 0 and times["ours"]["Gmain_wall"] > 0
    assert all(p.grad is None for arm in arms.values() for m in arm[1].values() for p in m.parameters())


def test_cli_refuses_a_folder_that_is_not_a_clone(tmp_path: Path):
    result = CliRunner().invoke(bench.main, ["--configs", "micro16", "--official", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a stylegan2-ada-pytorch clone" in result.output and "git clone" in result.output


def test_cli_names_a_module_the_official_code_misses(fake_clone: Path):
    (fake_clone / "training" / "networks.py").write_text("import genforce_missing_dependency\n")
    result = CliRunner().invoke(bench.main, ["--configs", "micro16", "--official", str(fake_clone)])
    assert result.exit_code == 1
    assert "imports 'genforce_missing_dependency'" in result.output and "pip install" in result.output
