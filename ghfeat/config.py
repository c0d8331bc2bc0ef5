"""GH-Feat config: the official ``train_ghfeat.py`` / ``training_loop_ghfeat.py`` defaults (spec ghfeat.md §2.2, §6).

Two official flags are inverted (``action='store_false'``): ``--mirror_augment`` turns x-flips OFF (they are on by
default) and ``--pretrained_D`` gives a freshly initialised D (by default D starts from the generator pickle's D).
Here both are plain booleans named for what they do, with the official defaults: ``data.mirror: true``,
``train.pretrained_D: true``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.config import ConfigError

BATCH_PER_GPU = {128: 16, 256: 12, 512: 8, 1024: 4}  # official: per-GPU batch by resolution
TOTAL_KIMG = {128: 12000, 256: 14000, 512: 16000, 1024: 18000}  # official: length by resolution


@dataclass
class GHFeatOptim:
    """Adam for E and D (beta1 0.9, beta2 0.99, eps 1e-8) at lr * decay_rate ** (step / decay_every)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    decay_rate: float = 0.8
    decay_every: int | None = None  # None: iterations // 4 (train_ghfeat.py overrides the lr dict's 30000)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optim.lr must be a finite number > 0, got {self.lr}")
        if not 0 < self.decay_rate <= 1:
            raise ConfigError(f"optim.decay_rate is a factor in (0, 1], got {self.decay_rate}")
        if self.decay_every is not None and self.decay_every < 1:
            raise ConfigError(f"optim.decay_every must be >= 1 iteration (or null: iterations // 4), got "
                              f"{self.decay_every}")


@dataclass
class GHFeatTrain:
    batch: int = 96  # official: 12 per GPU x 8 GPUs at 256 px
    total_kimg: float = 14000.0  # official at 256 px
    pretrained_D: bool = True  # official default (the --pretrained_D flag, store_false, turns it off)

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ConfigError(f"train.batch must be >= 1, got {self.batch}")
        if not (math.isfinite(self.total_kimg) and self.total_kimg > 0):
            raise ConfigError(f"train.total_kimg must be a finite number > 0, got {self.total_kimg}")

    def iterations(self) -> int:
        """max_iters = total_kimg * 1000 / batch (145,833 at 256 px on 8 GPUs)."""
        return int(self.total_kimg * 1000 // self.batch)


@dataclass
class GHFeatLoss:
    feature_scale: float = 5e-5
    d_scale: float = 0.08  # train_ghfeat.py --d_scale (the loss function's own default is 0.1)
    r1_gamma: float = 10.0


@dataclass
class GHFeatData:
    mirror: bool = True  # official default (the --mirror_augment flag, store_false, turns flips off)


@dataclass
class GHFeatConfig:
    """One GH-Feat training run (the sections built so far; the encoder, generator and data sections follow with the
    training loop, issue #18)."""

    seed: int = 1000  # official rnd.np_random_seed
    optim: GHFeatOptim = field(default_factory=GHFeatOptim)
    train: GHFeatTrain = field(default_factory=GHFeatTrain)
    loss: GHFeatLoss = field(default_factory=GHFeatLoss)
    data: GHFeatData = field(default_factory=GHFeatData)


def learning_rate(optim: GHFeatOptim, step: int, iterations: int) -> float:
    """``tf.train.exponential_decay(lr, step, decay_every, rate, staircase=False)``: lr * rate ** (step / every).

    One step per iteration. The official graph probably advanced its step counter twice per iteration (the increment
    is a control dependency of both optimisers' updates, which run in separate ``sess.run`` calls; spec §2.2), which
    would end at 1e-4 * 0.8^8 instead of 0.8^4; this follows the written schedule.
    """
    every = optim.decay_every if optim.decay_every is not None else max(iterations // 4, 1)
    return optim.lr * optim.decay_rate ** (step / every)
