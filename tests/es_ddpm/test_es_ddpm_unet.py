"""ADM UNet: spec §9.1-9.2 parameter counts and auto channel_mult, guided-diffusion key schema and shapes, official
state-dict loading with weights_only, forward shapes/precision, and the summary CLI's last line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from common.checkpoint import CheckpointError
from common.config import ConfigError, load_config
from es_ddpm.config import ESDDPMConfig, build_classifier, build_unet, config_path
from es_ddpm.sample import load_ddpm
from es_ddpm.summary import main as summary_main
from es_ddpm.unet import UNetModel, parse_channel_mult, timestep_embedding


def _meta_model(cfg_name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_unet(load_config(ESDDPMConfig, config_path(cfg_name)).model)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_imagenet64_adm_count_and_key_schema():
    model = _meta_model("imagenet64")
    assert _count(model) == 295_904_454
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "time_embed.0.weight": (768, 192),
        "time_embed.2.weight": (768, 768),
        "label_emb.weight": (1000, 768),
        "input_blocks.0.0.weight": (192, 3, 3, 3),
        "input_blocks.1.0.in_layers.0.weight": (192,),
        "input_blocks.1.0.in_layers.2.weight": (192, 192, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (384, 768),  # scale-shift: 2 x out channels
        "input_blocks.1.0.out_layers.3.weight": (192, 192, 3, 3),
        "input_blocks.4.0.in_layers.2.weight": (192, 192, 3, 3),  # resblock_updown downsampler
        "input_blocks.5.0.skip_connection.weight": (384, 192, 1, 1),
        "input_blocks.5.1.qkv.weight": (1152, 384, 1),  # attention at 32 px (ds 2)
        "input_blocks.5.1.proj_out.weight": (384, 384, 1),
        "middle_block.0.emb_layers.1.weight": (1536, 768),
        "middle_block.1.norm.weight": (768,),
        "output_blocks.0.0.skip_connection.weight": (768, 1536, 1, 1),
        "output_blocks.3.2.in_layers.2.weight": (768, 768, 3, 3),  # resblock_updown upsampler
        "out.0.weight": (192,),
        "out.2.weight": (6, 192, 3, 3),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert len(model.input_blocks) == 16 and len(model.output_blocks) == 16


def test_lsun256_adm_count_and_six_output_channels():
    model = _meta_model("lsun_bedroom")
    assert _count(model) == 552_814_086
    assert model.out[2].weight.shape[0] == 6 and not hasattr(model, "label_emb")
    assert _meta_model("lsun_cat").state_dict().keys() == model.state_dict().keys()


def test_imagenet64_classifier_count_and_keys():
    cfg = load_config(ESDDPMConfig, config_path("imagenet64"))
    with torch.device("meta"):
        classifier = build_classifier(cfg.classifier, 64)
    assert _count(classifier) == 65_438_568
    keys = classifier.state_dict()
    assert tuple(keys["out.2.positional_embedding"].shape) == (512, 65)
    assert tuple(keys["out.2.c_proj.weight"].shape) == (1000, 512, 1)


def test_channel_mult_auto_and_32px_error():
    assert parse_channel_mult(64, "") == (1, 2, 3, 4)
    assert parse_channel_mult(256, "") == (1, 1, 2, 2, 4, 4)
    assert parse_channel_mult(32, "1,2,2,2") == (1, 2, 2, 2)
    with pytest.raises(ValueError, match="no default channel_mult for image_size 32"):
        parse_channel_mult(32, "")
    with pytest.raises(ConfigError, match="give channel_mult explicitly"):
        build_unet(load_config(ESDDPMConfig, overrides=["model.image_size=32"]).model)


def test_timestep_embedding_closed_form():
    emb = timestep_embedding(torch.tensor([0, 3]), 6)
    half_freqs = torch.tensor([1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3)])
    assert torch.allclose(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.allclose(emb[1], torch.cat([torch.cos(3 * half_freqs), torch.sin(3 * half_freqs)]), atol=1e-6)


def _small(**kw) -> UNetModel:
    args = dict(image_size=16, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
                attention_resolutions="8,4", channel_mult="1,2,2", num_heads=2, use_scale_shift_norm=True,
                resblock_updown=True, num_classes=10)
    args.update(kw)
    return UNetModel(**args)


@pytest.mark.parametrize("new_order", [False, True])
def test_forward_shapes_and_zero_init_output(new_order):
    torch.manual_seed(0)
    model = _small(use_new_attention_order=new_order)
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 999]), torch.tensor([1, 7])
    out = model(x, t, y=y)
    assert out.shape == (2, 6, 16, 16)
    assert out.abs().max() == 0  # the output conv is zero-initialised (guided-diffusion zero_module)
    with pytest.raises(ValueError, match="class labels"):
        model(x, t)


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    model = _small(num_classes=None)
    for p in model.parameters():  # leave zero-init to see a non-trivial output
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 500])
    reference = model(x, t)
    model.dtype = torch.bfloat16
    low = model(x, t)
    assert low.dtype == torch.float32
    assert (low - reference).abs().max() < 0.05 * reference.abs().max()


def test_official_state_dict_loads_with_weights_only(tmp_path):
    cfg = load_config(ESDDPMConfig, config_path("tiny"))
    source = build_unet(cfg.model)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    torch.save(source.state_dict(), tmp_path / "official.pt")  # an official .pt is a bare state dict
    loaded = load_ddpm(tmp_path / "official.pt", cfg)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    other = load_config(ESDDPMConfig, config_path("tiny"), ["model.num_channels=32"])
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_ddpm(tmp_path / "official.pt", other)


def test_summary_cli_prints_block_table_and_total():
    result = CliRunner().invoke(summary_main, [
        "--image_size", "256", "--num_channels", "256", "--num_res_blocks", "2", "--attention_resolutions",
        "32,16,8", "--num_head_channels", "64", "--resblock_updown", "true", "--learn_sigma", "true",
        "--dropout", "0.1",
    ])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == "UNet 552814086"
    assert any(line.startswith("middle_block") for line in lines)
    bad = CliRunner().invoke(summary_main, ["--image_size", "32"])
    assert bad.exit_code == 1 and "give channel_mult explicitly" in bad.output and "Traceback" not in bad.output
