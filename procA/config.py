"""Config schema of the ProCA pipeline; defaults are the official GTA5 -> Cityscapes values (spec §2.5, §9).

One file per paper table row holds every stage: ``source_only`` (stage 1), ``proca`` (stage 3) and
``self_training`` (stage 5) share :class:`StageConfig`; stage 2 (prototype init) and stage 4 (pseudo-labels) read
``contrast``/``pseudo_label``. ``configs/tiny.yaml`` differs only in values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import config_row

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class SyntheticConfig:
    """Procedural street scenes for the tiny preset (procA/synthetic.py)."""

    size: int = 64
    num_source: int = 400
    num_target: int = 400
    num_val: int = 200


@dataclass
class DataConfig:
    """Datasets (spec §4). Sizes are (width, height) as the official INPUT.*_SIZE_* keys."""

    source: Literal["gta5", "synthia", "synthetic"] = "gta5"
    source_root: str = ""  # datasets/gtav or datasets/synthia
    source_list: str = ""  # official list file of names; '' = every image found
    target_root: str = ""  # datasets/cityscapes
    target_train_list: str = ""
    target_val_list: str = ""
    source_size: tuple[int, int] = (1280, 720)
    target_size: tuple[int, int] = (1024, 512)
    test_size: tuple[int, int] = (1024, 512)
    num_workers: int = 4
    # official class-balanced source list (procA/label_info.py) in stages 1 and 3; needs <source_root>/*_label_info.p
    class_balanced: bool = True
    label_info: str = ""  # the label-info pickle; '' = <source_root>/gtav_label_info.p or synthia_label_info.p
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """DeepLab-v2: dilated torchvision ResNet + ASPP-V2 (spec §3)."""

    num_classes: int = 19
    blocks: tuple[int, int, int, int] = (3, 4, 23, 3)  # ResNet-101
    base_width: int = 64
    dilate: tuple[bool, bool, bool] = (False, True, True)  # output stride 8
    aspp_rates: tuple[int, ...] = (6, 12, 18, 24)
    imagenet_weights: str = ""  # torchvision resnet101-*.pth; '' = random init (tiny preset only)
    freeze_bn: bool = False  # official MODEL.FREEZE_BN: BN in eval mode, affine parameters fixed
    sync_bn: bool = True  # SyncBatchNorm under multi-GPU DDP when BN is not frozen


@dataclass
class StageConfig:
    """Optimisation of one training stage: SGD, classifier LR = ``head_lr_mult`` x backbone LR, poly schedule."""

    iters: int = 20000  # official STOP_ITER
    max_iters: int = 31250  # official MAX_ITER: the poly schedule's horizon
    batch_size: int = 8  # global, per domain: the official ProCA stage draws 4 source + 4 target images
    lr: float = 5e-4
    head_lr_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_power: float = 0.9
    lambda_lov: float = 0.0  # Lovász-softmax weight in the supervised source loss
    strong_aug: bool = False  # stage 3: source jitter/grayscale/blur; stage 5: target scale/crop/flip/jitter/blur
    init: str = ""  # model file to start from; '' = ImageNet weights (model.imagenet_weights) or random
    eval_every: int = 1000
    snapshot_every: int = 1000


@dataclass
class ContrastConfig:
    """Prototype contrast (spec §2.2-2.3; official MODEL.CONTRAST.* and SOLVER.* keys)."""

    tau: float = 50.0  # official TAU: DIVIDES the cosine similarities
    lambda_feat: float = 1.0
    lambda_out: float = 1.0
    multi_level: bool = True  # also contrast the classifier outputs
    delta: float = 0.9  # target pixels with max score below delta are ignored
    target_mask_on: Literal["logits", "prob"] = "logits"  # official: raw logits
    proto_update: Literal["cumulative", "ema"] = "cumulative"
    ema_momentum: float = 0.9
    prototypes: str = ""  # prototypes.pt written by procA.init_prototypes (stage 2)


@dataclass
class PseudoLabelConfig:
    """Offline pseudo-labels for self-training (spec §2.4)."""

    threshold_percent: float = 0.6
    threshold_cap: float = 0.9
    labels_dir: str = ""  # stage 5 input: the pseudo_labels/ folder written by procA.pseudo_label


@dataclass
class EvalConfig:
    """Cityscapes val protocol (spec §5). Training-time evaluation is single-scale without flip."""

    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    flip: bool = True
    batch_size: int = 1


@dataclass
class ProCAConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    source_only: StageConfig = field(default_factory=lambda: StageConfig(lambda_lov=0.75))
    proca: StageConfig = field(
        default_factory=lambda: StageConfig(
            iters=90000, max_iters=90000, batch_size=4, lr=2.5e-4, lambda_lov=0.75, strong_aug=True
        )
    )
    self_training: StageConfig = field(
        default_factory=lambda: StageConfig(iters=90000, max_iters=90000, strong_aug=True)
    )
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    pseudo_label: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


STAGES = ("source_only", "proca", "self_training")


def config_path(name: str | None) -> str | None:
    """``--cfg tiny`` / ``gta5`` / ``synthia`` -> ``procA/configs/<name>.yaml``; a ``.yaml`` path is used as given."""
    return None if name is None else str(config_row(CONFIG_DIR, name))
