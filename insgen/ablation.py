"""One arm of the tiny ablation: train the tiny preset (InsGen on or off) and measure it as it trains (spec §8).

Every ``probe_every`` iterations and at the end, under ``torch.random.fork_rng`` (training continues exactly as
without the probe): the D over-fitting gap (training reals vs 300 held-out digits), instance-retrieval top-1 of D's
features on the held-out digits, proxy-FD of G_ema against all 1,797 digits, and the class entropy of G_ema's
samples (also appended to ``<run_dir>/probe.jsonl``). The training subset is fixed (``data.subset_seed``), so
every arm and seed sees the same 100 images.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.config import load_config
from common.data import ImageDataset
from common.data.synthetic import digits_dataset
from common.metrics import build_extractor, compute_fid
from common.stylegan2.augment import augment_pipe as make_augment_pipe
from common.stylegan2.training import LoopState, generate_images, load_dataset, replace_cfg, train
from common.threads import configure_threads
from insgen.config import InsGenConfig, config_path
from insgen.diagnostics import DigitClassifier, class_entropy, discriminator_gap, instance_retrieval_top1
from insgen.method import InsGen

NUM_HELDOUT = 300
NUM_FAKES = 1000
GRID_SIZE = 64


@dataclass
class ArmSpec:
    """What one process trains: the setting ('noaug' or 'ada'), InsGen on/off, the seed and the budget."""

    setting: str
    insgen: bool
    seed: int
    total_kimg: float
    probe_every: int  # iterations
    run_dir: str
    num_fakes: int = NUM_FAKES  # samples per probe for proxy-FD and class entropy
    overrides: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{'InsGen' if self.insgen else 'baseline'} / {self.setting} / seed {self.seed}"


SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    # D sees un-augmented images and over-fits the 100 digits; InsGen's views come from the fixed bgc pipe
    "noaug": {"augment": {"mode": "noaug"}, "insgen": {}},
    # ADA on both arms; InsGen's views come from the adversarial ADA pipe, as the official code
    "ada": {"augment": {"mode": "ada"}, "insgen": {"view_pipe": None}},
}


def arm_config(spec: ArmSpec) -> InsGenConfig:
    """The tiny preset with the arm's setting, switch, seed and budget; no metrics in the loop (the probe has them)."""
    cfg = load_config(InsGenConfig, config_path("tiny"), spec.overrides)
    setting = SETTINGS[spec.setting]
    return replace_cfg(
        dataclasses.replace(cfg, seed=spec.seed),
        augment=setting["augment"],
        insgen={**setting["insgen"], "enabled": spec.insgen},
        train={"total_kimg": spec.total_kimg, "kimg_per_tick": spec.total_kimg, "metrics": ["none"]},
    )


class _Probe:
    """The measurements of one arm; images and networks are fixed once, so every probe is comparable."""

    def __init__(self, cfg: InsGenConfig, device: torch.device, num_fakes: int) -> None:
        self.num_fakes = num_fakes
        train_set = load_dataset(cfg)
        full = ImageDataset(digits_dataset(resolution=cfg.data.resolution))
        kept = set(train_set.raw_indices.tolist())
        rest = np.array([i for i in range(len(full)) if i not in kept])
        heldout = np.sort(np.random.RandomState(0).permutation(rest)[:NUM_HELDOUT])
        self.train_images = _as_float(np.stack([train_set[i][0] for i in range(len(train_set))]), device)
        self.heldout_images = _as_float(np.stack([full[int(i)][0] for i in heldout]), device)
        self.full = full
        self.proxy = build_extractor("proxy", device=device)
        self.classifier = DigitClassifier()
        self.view_augment = make_augment_pipe("bgc", p=0.3).to(device)
        self.history: list[dict[str, float]] = []

    def measure(self, state: LoopState) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            z = torch.randn([self.num_fakes, state.G_ema.z_dim], device=state.device)
            fakes = torch.from_numpy(generate_images(state.G_ema, z, None)).float() / 127.5 - 1
            self.history.append(
                {
                    "kimg": state.cur_nimg / 1000,
                    "gap": discriminator_gap(state.D, self.train_images, self.heldout_images),
                    "retrieval_top1": instance_retrieval_top1(state.D, self.heldout_images, self.view_augment),
                    "proxy_fd": compute_fid(self.full, state.G_ema, self.proxy, num_gen=self.num_fakes),
                    "class_entropy": class_entropy(self.classifier.predict(fakes)),
                    "augment_p": float(state.augment_pipe.p) if state.augment_pipe is not None else 0.0,
                }
            )
        with open(state.run_dir / "probe.jsonl", "a") as f:  # follow a long run while it trains
            f.write(json.dumps(self.history[-1]) + "\n")


class _ProbedInsGen(InsGen):
    def __init__(self, probe_every: int, total_nimg: int, num_fakes: int) -> None:
        super().__init__()
        self.probe_every, self.total_nimg, self.num_fakes = probe_every, total_nimg, num_fakes
        self.probe: _Probe | None = None

    def setup(self, state: LoopState) -> None:
        super().setup(state)
        self.probe = _Probe(state.cfg, state.device, self.num_fakes)

    def after_iteration(self, state: LoopState) -> None:
        if state.batch_idx % self.probe_every == 0 or state.cur_nimg >= self.total_nimg:
            self.probe.measure(state)


def run_arm(spec: ArmSpec) -> dict[str, Any]:
    """Train one arm on CPU with one thread; returns its history, final numbers, sample grid and wall time."""
    configure_threads()
    cfg = arm_config(spec)
    method = _ProbedInsGen(spec.probe_every, int(cfg.train.total_kimg * 1000), spec.num_fakes)
    start, cpu_start = time.perf_counter(), time.process_time()
    state = train(cfg, spec.run_dir, method=method, device="cpu")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    z = torch.randn([GRID_SIZE, state.G_ema.z_dim], generator=torch.Generator().manual_seed(123))
    return {
        "spec": dataclasses.asdict(spec),
        "label": spec.label,
        "history": method.probe.history,
        "final": method.probe.history[-1],
        "grid": generate_images(state.G_ema, z, None),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "iterations": state.batch_idx,
    }


def _as_float(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).float() / 127.5 - 1


def run_dir_for(root: Path, spec: ArmSpec) -> str:
    return str(root / f"{spec.setting}-{'insgen' if spec.insgen else 'baseline'}-seed{spec.seed}")
