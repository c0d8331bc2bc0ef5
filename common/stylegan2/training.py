"""The StyleGAN2-ADA training loop shared by insgen, dynamicd, eqgan, oneshot_gan and ghfeat (spec §2.2).

One iteration = [Gmain, Greg every 4th, Dmain, Dreg every 16th] on one real batch, then the EMA of G, then the ADA
update every 4th iteration. A paper extends the loop through the hooks of a :class:`~common.stylegan2.method.Method`
(see that module): it builds or wraps G/D before G_ema is copied, takes pretrained weights (``train.init_from``),
names the parameters each phase trains, adds modules with their own optimizers and EMA copies (registered in
``state.modules`` / ``state.optimizers`` / ``state.ema_pairs``, so snapshots and EMA cover them), may replace
``state.ada`` by another p schedule with the same interface (InsGen's ``ada_linear``), subclasses the loss, runs
code before and after every iteration and logs its own scalars.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from common import checkpoint, dist
from common.config import ConfigError, to_dict
from common.data import ImageDataset, infinite_loader
from common.data.synthetic import digits_dataset, shapes_dataset
from common.logging import Progress, ScalarLogger, drop_records_after
from common.report import save_image_grid
from common.stylegan2.ada import AdaptiveP
from common.stylegan2.augment import augment_pipe as make_augment_pipe
from common.stylegan2.config import StyleGAN2Config, resolve
from common.stylegan2.method import LoopState, Method, Networks, NetworkShape
from common.stylegan2.metrics import make_evaluator
from common.stylegan2.probe import LimitedProbe
from common.stylegan2.snapshot import load_networks


@dataclass
class Phase:
    name: str
    params: list[nn.Parameter]  # what the phase trains (Method.trainable_parameters)
    opt: torch.optim.Optimizer
    interval: int


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
    """p_ema <- lerp(p, p_ema, beta) for parameters; buffers are copied. The two must have the same parameters and
    buffers (names and shapes): a network changed after its EMA copy was made is an error, not a silent zip."""
    for kind in ("parameters", "buffers"):
        own, copy_ = list(getattr(module, f"named_{kind}")()), list(getattr(ema, f"named_{kind}")())
        if [(n, t.shape) for n, t in own] != [(n, t.shape) for n, t in copy_]:
            differ = sorted({n for n, _ in own} ^ {n for n, _ in copy_}) or ["(same names, other shapes)"]
            raise ValueError(
                f"update_ema: the EMA copy no longer matches its network ({kind} differ: {', '.join(differ[:5])}); "
                "build or wrap networks in Method.build_networks, before the EMA copy is made"
            )
        for (_, t), (_, t_ema) in zip(own, copy_):
            t_ema.copy_(t.detach().lerp(t_ema, beta) if kind == "parameters" else t)


def lazy_adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], eps: float, interval: int
) -> torch.optim.Adam:
    """Adam for a network regularised every ``interval`` steps: lr and betas rescaled by c = I / (I + 1) (§2.2);
    ``interval`` 0 (no lazy regularisation) keeps them as given."""
    ratio = interval / (interval + 1) if interval else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=tuple(b**ratio for b in betas), eps=eps)


def _phases(G_params: list[nn.Parameter], D_params: list[nn.Parameter], cfg: StyleGAN2Config) -> list[Phase]:
    """Adam per network (:func:`lazy_adam`) over the parameters it trains; main and reg phases with lazy
    regularisation, one 'both' phase without."""
    phases = []
    optim = cfg.optim
    for name, params, lr, interval in (
        ("G", G_params, optim.g_lr, optim.g_reg_interval),
        ("D", D_params, optim.d_lr, optim.d_reg_interval),
    ):
        opt = lazy_adam(params, lr, optim.betas, optim.eps, interval)
        if interval:
            phases += [Phase(f"{name}main", params, opt, 1), Phase(f"{name}reg", params, opt, interval)]
        else:
            phases.append(Phase(f"{name}both", params, opt, 1))
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
    augment p, ADA accumulators, the path-length mean, the method's extra state, RNG states, the image count and
    what rebuilds the networks (shape and ``method.ref()``). Metrics of ``cfg.train.metrics`` are computed on G_ema
    at each snapshot and logged (``evaluate(G_ema)`` replaces them when given). ``cfg.train.init_from`` starts a
    fresh run (not a resumed one) from pretrained weights (``Method.init_networks``).
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

    shape = NetworkShape(dataset.resolution, dataset.num_channels, dataset.label_dim)
    nets = method.build_networks(cfg, shape)
    G, D = nets.G.to(device).train(), nets.D.to(device).train()
    extra_modules = {name: module.to(device) for name, module in nets.extra.items()}
    G_ema = copy.deepcopy(G).eval()
    _requires_grad(G_ema, False)
    if cfg.train.init_from is not None and resume is None:
        source = load_networks(cfg.train.init_from, device)
        method.init_networks(Networks(G, D, G_ema, extra_modules), source)
        dist.print0(f"initialised from {source.source}")
    if evaluate is None:
        evaluate = make_evaluator(cfg.train.metrics, dataset, device, cfg.train.inception_weights)
    rng_devices = [device] if device.type == "cuda" else []
    probe = None
    if cfg.probe.every:  # on every rank: its proxy-FD gathers samples from all of them
        with torch.random.fork_rng(devices=rng_devices):
            probe = LimitedProbe(dataset, run_dir, device, cfg.probe.heldout, cfg.probe.num_fakes)
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
    state.modules.update(G=G, D=D, G_ema=G_ema, **extra_modules)
    if pipe is not None:
        state.modules["augment_pipe"] = pipe
    method.setup(state)
    ada = state.ada  # a method may replace the p schedule (InsGen's ada_linear)
    for module in state.modules.values():  # ranks built them from different seeds; rank 0's are the start
        dist.broadcast_module(module)
    state.loss = method.build_loss(state, G, D)
    phases = _phases(method.trainable_parameters(state, "G"), method.trainable_parameters(state, "D"), cfg)
    for phase in phases:
        state.optimizers.setdefault(phase.name[0], phase.opt)
    _requires_grad(G, False)  # each phase switches on only the parameters it trains
    _requires_grad(D, False)

    manager = checkpoint.CheckpointManager(run_dir, keep_last=cfg.train.keep_snapshots)
    if resume is not None:
        path = checkpoint.resolve_resume(resume)
        ckpt = checkpoint.load_checkpoint(path, map_location=device)
        recorded = ((ckpt.get("extra") or {}).get("network") or {}).get("method")
        if recorded is not None and recorded != method.ref():
            raise checkpoint.CheckpointError(
                f"{path} was trained by {recorded}, this run is {method.ref()}: --resume continues the same method; "
                "start from it with --set train.init_from=PATH instead"
            )
        _, extra = checkpoint.restore(ckpt, state.modules, state.optimizers, source=str(path))
        state.cur_nimg, state.batch_idx = int(extra["cur_nimg"]), int(extra["batch_idx"])
        state.loss.pl_mean = extra["pl_mean"].to(device)
        if ada is not None:
            ada.load_state_dict(extra["ada"])
        method.load_extra_state(state, extra.get("method", {}))
        dist.print0(f"resumed from {path} at {state.cur_nimg / 1000:.3f} kimg")
        if dist.is_main():  # rows a crashed run wrote after this snapshot are written again from here
            for name, key, scale in (("stats.jsonl", "step", 1), ("probe.jsonl", "kimg", 1000)):
                drop_records_after(run_dir / name, key, state.cur_nimg / scale)

    total_nimg = int(cfg.train.total_kimg * 1000)
    tick_nimg = int(cfg.train.kimg_per_tick * 1000)
    cur_tick = 0
    if resume is not None:  # the tick schedule of the uninterrupted run (older snapshots: an estimate)
        cur_tick = int(extra.get("next_tick", state.cur_nimg // tick_nimg if tick_nimg else 0))
        if state.cur_nimg >= total_nimg and max_iterations is None:
            dist.print0(f"{path} is the end of the run ({cfg.train.total_kimg:g} kimg): nothing to train")
            return state
    loader = _real_batches(dataset, cfg, state.batch_idx, device)
    logger = ScalarLogger(run_dir)
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
                for p in phase.params:
                    p.requires_grad_(True)
                phase.opt.zero_grad(set_to_none=True)
                for img, c, z, zc in zip(real_imgs, real_cs, gen_z.split(batch_gpu), gen_c.split(batch_gpu)):
                    state.loss.accumulate_gradients(phase.name, img, c, z, zc, gain=phase.interval / rounds)
                dist.all_reduce_grads(phase.params)
                for p in phase.params:
                    p.requires_grad_(False)
                    if p.grad is not None:
                        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                phase.opt.step()
            update_ema(G, G_ema, ema_beta(cfg, state.cur_nimg))
            for module, ema, beta_fn in state.ema_pairs:
                update_ema(module, ema, beta_fn(state))
            state.cur_nimg += batch
            state.batch_idx += 1
            done = state.cur_nimg >= total_nimg or (stop_at is not None and state.batch_idx >= stop_at)
            method.after_iteration(state)
            if probe is not None and (done or state.batch_idx % cfg.probe.every == 0):
                with torch.random.fork_rng(devices=rng_devices):
                    probe.measure(state.G_ema, state.D, state.cur_nimg, state.batch_idx,
                                  float(pipe.p) if pipe is not None else 0.0)
            r_t = ada.step(state.batch_idx) if ada is not None else None
            progress.update(batch, p=float(pipe.p) if pipe is not None else 0.0)

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
            scalars.update(method.scalars(state))
            if done or cur_tick % cfg.train.snap_ticks == 0:
                _snapshot(state, method, shape, manager, grid_z, cfg, next_tick=cur_tick + 1)
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
    state: LoopState,
    method: Method,
    shape: NetworkShape,
    manager: checkpoint.CheckpointManager,
    grid_z: Tensor,
    cfg: StyleGAN2Config,
    next_tick: int,
) -> None:
    extra = {
        "cur_nimg": state.cur_nimg,
        "batch_idx": state.batch_idx,
        "next_tick": next_tick,
        "pl_mean": state.loss.pl_mean.detach().cpu(),
        "ada": state.ada.state_dict() if state.ada is not None else None,
        "method": method.extra_state(state),
        "network": {**dataclasses.asdict(shape), "method": method.ref()},
    }
    snap = checkpoint.capture(state.batch_idx, state.modules, state.optimizers, extra=extra, config=to_dict(cfg))
    manager.save(snap)
    if dist.is_main():
        labels = _grid_labels(state.dataset, len(grid_z), state.device)
        devices = [state.device] if state.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # a G that draws inputs (EqGAN-SA's heatmaps) moves no RNG
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
