"""The StyleGAN2-ADA training loop shared by insgen, dynamicd, eqgan, oneshot_gan and ghfeat (spec §2.2).

One iteration = [Gmain, Greg every 4th, Dmain, Dreg every 16th] on one real batch, then the EMA of G, then the ADA
update every 4th iteration. A paper extends the loop through a :class:`Method`:

- ``build_loss``: a :class:`StyleGAN2Loss` subclass that adds terms to phases (InsGen's contrastive losses) and may
  feed G extra inputs in ``run_G`` (EqGAN's heatmaps);
- ``setup``: extra modules with their own optimizers and EMA copies (InsGen's heads and D_ema, EqGAN's encoder),
  registered in ``state.modules`` / ``state.optimizers`` / ``state.ema_pairs`` so snapshots and EMA cover them;
  it may also replace ``state.ada`` by another p schedule with the same interface (InsGen's ``ada_linear``);
- ``before_iteration``: may change D before its forward (DynamicD's width schedule, InsGen's D_ema update);
- ``after_iteration``: per-iteration updates after the phases and G's EMA;
- ``extra_state`` / ``load_extra_state``: method state in snapshots that is not a module's state_dict.

Differences from the official loop, by design: under torchrun the networks are not DDP-wrapped; every rank starts
from rank 0's modules (broadcast) and each phase averages its gradients over ranks with one flattened all_reduce
after its accumulation rounds (the official DDP overlaps that with the backward; the result is the same, and the loss
may call ``G.mapping``/``G.synthesis`` or ``D(..., return_feats=True)`` freely). As the official
``broadcast_buffers=False``, buffers (G's w_avg) are not kept in sync; snapshots take rank 0's. Gradients accumulated
over ``batch // (batch_gpu * gpus)`` rounds are averaged, not summed, so one GPU with accumulation takes exactly
the step of N GPUs without it (Adam makes the two nearly identical anyway, up to eps); snapshots are ``torch.save``
files with the full training state (resume continues bit for bit), not pickles of modules.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common import checkpoint, dist
from common.config import ConfigError, to_dict
from common.data import ImageDataset, infinite_loader
from common.data.synthetic import digits_dataset, shapes_dataset
from common.logging import Progress, ScalarLogger
from common.report import save_image_grid
from common.stylegan2.ada import AdaptiveP
from common.stylegan2.augment import augment_pipe as make_augment_pipe
from common.stylegan2.build import build_discriminator, build_generator
from common.stylegan2.config import StyleGAN2Config, resolve
from common.stylegan2.loss import StyleGAN2Loss
from common.stylegan2.metrics import make_evaluator


@dataclass
class Phase:
    name: str
    module: nn.Module
    opt: torch.optim.Optimizer
    interval: int


@dataclass
class LoopState:
    """Everything the loop and a :class:`Method` share. ``modules``/``optimizers`` are what snapshots hold."""

    cfg: StyleGAN2Config
    device: torch.device
    dataset: ImageDataset
    run_dir: Path
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    augment_pipe: nn.Module | None
    ada: AdaptiveP | None
    modules: dict[str, nn.Module] = field(default_factory=dict)
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    ema_pairs: list[tuple[nn.Module, nn.Module, Callable[[LoopState], float]]] = field(default_factory=list)
    loss: StyleGAN2Loss | None = None
    cur_nimg: int = 0
    batch_idx: int = 0


class Method:
    """Plain StyleGAN2-ADA; paper packages subclass this and override what they add."""

    name = "stylegan2-ada"

    def build_loss(self, state: LoopState, G: nn.Module, D: nn.Module) -> StyleGAN2Loss:
        return StyleGAN2Loss(G, D, **self.loss_kwargs(state))

    def loss_kwargs(self, state: LoopState) -> dict[str, Any]:
        """The :class:`StyleGAN2Loss` keyword arguments of ``state.cfg`` (subclass losses take them too)."""
        loss_cfg = state.cfg.loss
        return dict(
            augment_pipe=state.augment_pipe,
            ada=state.ada,
            r1_gamma=loss_cfg.r1_gamma,
            style_mixing_prob=loss_cfg.style_mixing_prob,
            pl_weight=loss_cfg.pl_weight,
            pl_batch_shrink=loss_cfg.pl_batch_shrink,
            pl_decay=loss_cfg.pl_decay,
        )

    def setup(self, state: LoopState) -> None:
        """Create extra modules/optimizers/EMA pairs and register them in ``state``."""

    def before_iteration(self, state: LoopState) -> None:
        """Runs before the phases of every iteration (may change D)."""

    def after_iteration(self, state: LoopState) -> None:
        """Runs after the phases and G's EMA update of every iteration."""

    def extra_state(self, state: LoopState) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: LoopState, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""


def load_dataset(cfg: StyleGAN2Config) -> ImageDataset:
    """The training set of ``cfg.data``: a user path, or offline generated shapes/digits."""
    data = cfg.data
    if data.source == "path":
        if not data.path:
            raise ConfigError("data.path is not set: pass --set data.path=/path/to/dataset.zip (or DATA= to make)")
        path = data.path
    elif data.source == "digits":
        path = digits_dataset(resolution=data.resolution or 16)
    else:
        path = shapes_dataset(num_images=data.num_images, resolution=data.resolution or 32, seed=0)
    return ImageDataset(
        path,
        resolution=data.resolution,
        use_labels=data.cond,
        max_size=data.subset,
        xflip=data.mirror,
        random_seed=data.subset_seed if data.subset_seed is not None else cfg.seed,
    )


def ema_beta(cfg: StyleGAN2Config, cur_nimg: int) -> float:
    """beta = 0.5 ** (batch / ema_nimg), ema_nimg = min(ema_kimg * 1000, cur_nimg * rampup) with rampup (§2.2)."""
    ema_nimg = cfg.train.ema_kimg * 1000
    if cfg.train.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * cfg.train.ema_rampup)
    return 0.5 ** (cfg.train.batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(module: nn.Module, ema: nn.Module, beta: float) -> None:
    """p_ema <- lerp(p, p_ema, beta) for parameters; buffers are copied."""
    for p, p_ema in zip(module.parameters(), ema.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b, b_ema in zip(module.buffers(), ema.buffers()):
        b_ema.copy_(b)


def lazy_adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], eps: float, interval: int
) -> torch.optim.Adam:
    """Adam for a network regularised every ``interval`` steps: lr and betas rescaled by c = I / (I + 1) (§2.2);
    ``interval`` 0 (no lazy regularisation) keeps them as given."""
    ratio = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=tuple(b**ratio for b in betas), eps=eps)


def _phases(G: nn.Module, D: nn.Module, cfg: StyleGAN2Config) -> list[Phase]:
    """Adam per network (:func:`lazy_adam`); main and reg phases with lazy regularisation, one 'both' phase without."""
    phases = []
    optim = cfg.optim
    for name, module, lr, interval in (
        ("G", G, optim.g_lr, optim.g_reg_interval),
        ("D", D, optim.d_lr, optim.d_reg_interval),
    ):
        opt = lazy_adam([p for p in module.parameters() if p.requires_grad], lr, optim.betas, optim.eps, interval)
        if interval:
            phases += [Phase(f"{name}main", module, opt, 1), Phase(f"{name}reg", module, opt, interval)]
        else:
            phases.append(Phase(f"{name}both", module, opt, 1))
    return phases


def _sample_labels(dataset: ImageDataset, count: int, device: torch.device) -> Tensor:
    """Labels for fakes drawn from the dataset's label distribution (numpy RNG, as the official loop)."""
    if dataset.label_dim == 0:
        return torch.zeros([count, 0], device=device)
    labels = np.stack([dataset.get_label(int(i)) for i in np.random.randint(len(dataset), size=count)])
    return torch.from_numpy(labels).to(device)


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        if p.is_floating_point():
            p.requires_grad_(flag)


def train(
    cfg: StyleGAN2Config,
    run_dir: str | Path,
    method: Method | None = None,
    resume: str | Path | None = None,
    device: torch.device | str = "cpu",
    max_iterations: int | None = None,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
) -> LoopState:
    """Train until ``cfg.train.total_kimg`` (or ``max_iterations`` more iterations); returns the final state.

    Snapshots every ``snap_ticks`` ticks and at the end hold G, D, G_ema, the method's modules, every optimizer,
    augment p, ADA accumulators, the path-length mean, the method's extra state, RNG states and the image count.
    Metrics of ``cfg.train.metrics`` are computed on G_ema at each snapshot and logged (``evaluate(G_ema)``
    replaces them when given).
    """
    method = method or Method()
    device = torch.device(device)
    run_dir = Path(run_dir)
    dist.seed_all(cfg.seed)  # seed * world + rank, as the official loop; networks are built from this state
    dataset = load_dataset(cfg)
    cfg = resolve(cfg, dataset.resolution, gpus=dist.get_world_size())
    world = dist.get_world_size()
    batch, batch_gpu = cfg.train.batch, cfg.train.batch_gpu
    rounds = batch // (batch_gpu * world)

    G = build_generator(cfg, dataset.resolution, dataset.num_channels, dataset.label_dim).to(device).train()
    D = build_discriminator(cfg, dataset.resolution, dataset.num_channels, dataset.label_dim).to(device).train()
    G_ema = copy.deepcopy(G).eval()
    _requires_grad(G_ema, False)
    if evaluate is None:
        evaluate = make_evaluator(cfg.train.metrics, dataset, device, cfg.train.inception_weights)
    pipe = None
    ada = None
    if cfg.augment.mode != "noaug":
        pipe = make_augment_pipe(cfg.augment.pipe, p=cfg.augment.p).to(device).train()
        _requires_grad(pipe, False)
        if cfg.augment.mode == "ada":
            ada = AdaptiveP(
                pipe,
                target=cfg.augment.target,
                interval=cfg.augment.interval,
                ada_kimg=cfg.augment.kimg,
                batch_size=batch,
            )
    state = LoopState(
        cfg=cfg, device=device, dataset=dataset, run_dir=run_dir, G=G, D=D, G_ema=G_ema, augment_pipe=pipe, ada=ada
    )
    state.modules.update(G=G, D=D, G_ema=G_ema)
    if pipe is not None:
        state.modules["augment_pipe"] = pipe
    method.setup(state)
    ada = state.ada  # a method may replace the p schedule (InsGen's ada_linear)
    for module in state.modules.values():  # ranks built them from different seeds; rank 0's are the start
        dist.broadcast_module(module)
    state.loss = method.build_loss(state, G, D)
    phases = _phases(G, D, cfg)
    for phase in phases:
        state.optimizers.setdefault(phase.name[0], phase.opt)
    _requires_grad(G, False)
    _requires_grad(D, False)

    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        ckpt = checkpoint.load_checkpoint(path, map_location=device)
        _, extra = checkpoint.restore(ckpt, state.modules, state.optimizers, source=str(path))
        state.cur_nimg, state.batch_idx = int(extra["cur_nimg"]), int(extra["batch_idx"])
        state.loss.pl_mean = extra["pl_mean"].to(device)
        if ada is not None:
            ada.load_state_dict(extra["ada"])
        method.load_extra_state(state, extra.get("method", {}))
        dist.print0(f"resumed from {path} at {state.cur_nimg / 1000:.3f} kimg")

    loader = _real_batches(dataset, cfg, state.batch_idx, device)
    logger = ScalarLogger(run_dir)
    total_nimg = int(cfg.train.total_kimg * 1000)
    tick_nimg = int(cfg.train.kimg_per_tick * 1000)
    cur_tick = state.cur_nimg // tick_nimg if tick_nimg else 0
    tick_start_nimg, tick_start_time = state.cur_nimg, time.perf_counter()
    stop_at = state.batch_idx + max_iterations if max_iterations is not None else None
    z_dim = G.z_dim
    grid_z = torch.randn([min(32, 4 * batch_gpu), z_dim], generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    with Progress(total=total_nimg, initial=state.cur_nimg, desc=f"{method.name}") as progress:
        while True:
            method.before_iteration(state)
            real_img, real_c = next(loader)
            real_imgs = real_img.split(batch_gpu)
            real_cs = real_c.split(batch_gpu)
            all_z = torch.randn([len(phases) * batch_gpu * rounds, z_dim], device=device).split(batch_gpu * rounds)
            all_c = _sample_labels(dataset, len(phases) * batch_gpu * rounds, device).split(batch_gpu * rounds)
            for phase, gen_z, gen_c in zip(phases, all_z, all_c):
                if state.batch_idx % phase.interval != 0:
                    continue
                _requires_grad(phase.module, True)
                phase.opt.zero_grad(set_to_none=True)
                for img, c, z, zc in zip(real_imgs, real_cs, gen_z.split(batch_gpu), gen_c.split(batch_gpu)):
                    state.loss.accumulate_gradients(phase.name, img, c, z, zc, gain=phase.interval / rounds)
                dist.all_reduce_grads([p for p in phase.module.parameters() if p.requires_grad])
                _requires_grad(phase.module, False)
                for p in phase.module.parameters():
                    if p.grad is not None:
                        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                phase.opt.step()
            update_ema(G, G_ema, ema_beta(cfg, state.cur_nimg))
            for module, ema, beta_fn in state.ema_pairs:
                update_ema(module, ema, beta_fn(state))
            state.cur_nimg += batch
            state.batch_idx += 1
            method.after_iteration(state)
            r_t = ada.step(state.batch_idx) if ada is not None else None
            progress.update(batch, p=float(pipe.p) if pipe is not None else 0.0)

            done = state.cur_nimg >= total_nimg or (stop_at is not None and state.batch_idx >= stop_at)
            first_iteration = state.batch_idx == 1  # official: tick 0 (snapshot + metrics) right after it
            if not done and not first_iteration and state.cur_nimg < tick_start_nimg + tick_nimg:
                continue
            elapsed = time.perf_counter() - tick_start_time
            scalars = {k: float(v) for k, v in state.loss.stats.items()}
            scalars.update(
                kimg=state.cur_nimg / 1000, sec_per_kimg=elapsed / max((state.cur_nimg - tick_start_nimg) / 1000, 1e-8)
            )
            if pipe is not None:
                scalars["Progress/augment"] = float(pipe.p)
            if r_t is not None:
                scalars["Progress/rt"] = r_t
            if done or cur_tick % cfg.train.snap_ticks == 0:
                _snapshot(state, method, manager, grid_z, cfg)
                if evaluate is not None:
                    scalars.update({f"Metrics/{k}": v for k, v in evaluate(state.G_ema).items()})
            logger.log(state.cur_nimg, **scalars)
            cur_tick += 1
            tick_start_nimg, tick_start_time = state.cur_nimg, time.perf_counter()
            if done:
                break
    logger.close()
    return state


def _real_batches(
    dataset: ImageDataset, cfg: StyleGAN2Config, batch_idx: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Real images as float in [-1, 1] (x / 127.5 - 1), per rank, continuing the sampler stream at ``batch_idx``."""
    per_rank = cfg.train.batch // dist.get_world_size()
    loader = infinite_loader(
        dataset,
        batch_size=per_rank,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        seed=cfg.seed,
        start=batch_idx * per_rank,
        num_workers=cfg.data.workers,
        pin_memory=device.type == "cuda",
    )
    for images, labels in loader:
        yield images.to(device).to(torch.float32) / 127.5 - 1, labels.to(device)


@torch.no_grad()
def generate_images(G: nn.Module, z: Tensor, c: Tensor | None, batch: int = 16, **kwargs: Any) -> np.ndarray:
    """uint8 NCHW images of ``G(z, c)`` (const noise by default), clamped from [-1, 1]."""
    kwargs.setdefault("noise_mode", "const")
    out = []
    for i in range(0, len(z), batch):
        cc = c[i : i + batch] if c is not None else torch.zeros([len(z[i : i + batch]), 0], device=z.device)
        img = G(z[i : i + batch], cc, **kwargs)
        out.append((img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out).numpy()


def _snapshot(
    state: LoopState, method: Method, manager: checkpoint.CheckpointManager, grid_z: Tensor, cfg: StyleGAN2Config
) -> None:
    extra = {
        "cur_nimg": state.cur_nimg,
        "batch_idx": state.batch_idx,
        "pl_mean": state.loss.pl_mean.detach().cpu(),
        "ada": state.ada.state_dict() if state.ada is not None else None,
        "method": method.extra_state(state),
        "network": {
            "resolution": state.dataset.resolution,
            "img_channels": state.dataset.num_channels,
            "c_dim": state.dataset.label_dim,
        },
    }
    snap = checkpoint.capture(state.batch_idx, state.modules, state.optimizers, extra=extra, config=to_dict(cfg))
    manager.save(snap)
    if dist.is_main():
        labels = _grid_labels(state.dataset, len(grid_z), state.device)
        images = generate_images(state.G_ema, grid_z, labels)
        save_image_grid(
            state.run_dir / f"fakes{state.cur_nimg // 1000:06d}.png",
            images,
            scale=max(1, 128 // state.dataset.resolution),
        )


def _grid_labels(dataset: ImageDataset, count: int, device: torch.device) -> Tensor | None:
    """Deterministic labels for the snapshot grid: dataset labels of the first ``count`` images."""
    if dataset.label_dim == 0:
        return None
    return torch.from_numpy(np.stack([dataset.get_label(i % len(dataset)) for i in range(count)])).to(device)


def replace_cfg(cfg: StyleGAN2Config, **sections: dict[str, Any]) -> StyleGAN2Config:
    """A copy of ``cfg`` with fields of its sections replaced, e.g. ``replace_cfg(cfg, train={'total_kimg': 1})``."""
    updates = {name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    return dataclasses.replace(cfg, **updates)
