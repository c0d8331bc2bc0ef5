from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from common.config import ConfigError, config_from_dict, load_config, save_config, to_dict


@dataclass
class OptimConfig:
    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)


@dataclass
class TrainConfig:
    batch: int = 32
    kimg: int = 100
    mirror: bool = False
    aug: Literal["ada", "noaug", "fixed"] = "ada"
    name: str = "run"
    queue_size: int | None = None
    view: str | None = "bgc"
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class Config:
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: list[str] = field(default_factory=lambda: ["fid50k_full"])
    extra: dict[str, float] = field(default_factory=dict)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(Config)
    assert cfg == Config()


def test_file_values_and_types(tmp_path):
    path = write(tmp_path / "a.yaml", "seed: 3\ntrain:\n  batch: 64\n  optim:\n    lr: 2e-3\n    betas: [0.5, 0.9]\n")
    cfg = load_config(Config, path)
    assert cfg.seed == 3 and cfg.train.batch == 64
    assert cfg.train.optim.lr == 0.002  # PyYAML reads '2e-3' as a string; float fields accept it
    assert cfg.train.optim.betas == (0.5, 0.9)
    assert cfg.train.kimg == 100  # untouched default


def test_base_inheritance_merges_sections(tmp_path):
    write(tmp_path / "base.yaml", "seed: 1\ntrain:\n  batch: 16\n  kimg: 500\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain:\n  kimg: 10\n")
    cfg = load_config(Config, child)
    assert (cfg.seed, cfg.train.batch, cfg.train.kimg) == (1, 16, 10)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Config, tmp_path / "a.yaml")


def test_set_overrides_with_coercion(tmp_path):
    path = write(tmp_path / "a.yaml", "train:\n  batch: 16\n")
    cfg = load_config(
        Config,
        path,
        [
            "train.batch=8",
            "train.mirror=true",
            "train.optim.lr=0.01",
            "train.name=007",
            "train.queue_size=null",
            "metrics=[kid50k_full, pr50k3_full]",
            "extra.gamma=0.5",
        ],
    )
    assert cfg.train.batch == 8 and cfg.train.mirror is True and cfg.train.optim.lr == 0.01
    assert cfg.train.name == "007"  # string fields keep the text verbatim
    assert cfg.train.queue_size is None
    assert cfg.metrics == ["kid50k_full", "pr50k3_full"]
    assert cfg.extra == {"gamma": 0.5}


def test_set_null_clears_an_optional_string_and_stays_text_for_a_plain_one():
    cfg = load_config(Config, None, ["train.view=null", "train.name=null"])
    assert cfg.train.view is None and cfg.train.name == "null"
    assert load_config(Config, None, ["train.view=~"]).train.view is None
    assert load_config(Config, None, ["train.view=noise"]).train.view == "noise"


def test_unknown_key_names_key_file_valid_keys_and_closest_match(tmp_path):
    path = write(tmp_path / "bad.yaml", "train:\n  batchh: 16\n")
    with pytest.raises(ConfigError) as err:
        load_config(Config, path)
    message = str(err.value)
    assert "unknown config key 'batchh'" in message
    assert "train.batchh" in message
    assert str(path) in message
    assert "valid keys of 'train': batch, kimg, mirror, aug, name, queue_size, view, optim" in message
    assert "did you mean 'batch'?" in message


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", "sed: 1\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nseed: 2\n")
    with pytest.raises(ConfigError, match=f"unknown config key 'sed' .* in {base}.*did you mean 'seed'"):
        load_config(Config, child)


def test_unknown_key_in_set_names_the_override():
    with pytest.raises(
        ConfigError, match=r"unknown config key 'lr_g' \(at 'train.optim.lr_g'\) in --set train.optim.lr_g=1"
    ):
        load_config(Config, None, ["train.optim.lr_g=1"])


def test_wrong_types(tmp_path):
    path = write(tmp_path / "a.yaml", "train:\n  batch: many\n")
    with pytest.raises(
        ConfigError, match=f"wrong type for config key 'train.batch' in {path}: expected int, got str 'many'"
    ):
        load_config(Config, path)
    with pytest.raises(ConfigError, match="expected int, got float 1.5"):
        load_config(Config, None, ["train.batch=1.5"])
    with pytest.raises(ConfigError, match="expected bool"):
        load_config(Config, None, ["train.mirror=1"])
    with pytest.raises(ConfigError, match="choose one of 'ada', 'noaug', 'fixed'"):
        load_config(Config, None, ["train.aug=adaptive"])
    with pytest.raises(ConfigError, match="expected OptimConfig"):
        load_config(Config, None, ["train.optim=3"])
    with pytest.raises(ConfigError, match="key.subkey=value"):
        load_config(Config, None, ["train.batch"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Config, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Config, write(tmp_path / "x.yaml", "train: [1,\n"))
    with pytest.raises(ConfigError, match="mapping of keys at the top level"):
        load_config(Config, write(tmp_path / "y.yaml", "- 1\n- 2\n"))


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(Config, None, ["train.optim.betas=[0.1, 0.2]", "seed=9"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(path.read_text())["train"]["optim"]["betas"] == [0.1, 0.2]
    assert load_config(Config, path) == cfg
    assert config_from_dict(Config, to_dict(cfg)) == cfg
