"""Benchmark of the fused ops on StyleGAN2 shapes: ``python -m common.ops.bench [--ops ...] [--repeats N]``.

For every op and shape (N=16; C=512 at 8..32, 256 at 64, 128 at 128, 64 at 256) it prints the median time of our
reference path, of the CUDA kernels (on a CUDA device) and of the straightforward implementation the official
reference uses (bias, activation, gain and clamp as separate autograd ops; upfirdn2d as zero insertion + padding +
depthwise conv2d with the 2-D filter + subsampling), and the ratio ours / straightforward. ``fwd+bwd`` times the
forward pass plus the backward pass to the inputs. One intra-op CPU thread unless ``--threads`` says otherwise.

For the three convolution ops it also times the channel-mixing convolution alone (``conv alone``: the stride-2
``conv_transpose2d`` or ``conv2d`` every implementation of the op must run, in the faster of NCHW and NHWC): no
path built on the same convolution can be faster than that, so ``conv alone / straightforward`` is the floor of
the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from common.ops import conv as conv_module
from common.ops import extension
from common.ops.activation import bias_act
from common.ops.conv import conv2d_resample
from common.ops.modconv import modulated_conv2d
from common.ops.resample import downsample2d, filter_size, parse_padding, setup_filter, upsample2d

SHAPES = [(512, 8), (512, 16), (512, 32), (256, 64), (128, 128), (64, 256)]  # (channels, resolution)
OPS = ["bias_act", "upsample2d", "downsample2d", "conv2d_resample_up", "conv2d_resample_down", "modulated_conv2d"]
_CONV_OPS = {"conv2d_resample_up", "conv2d_resample_down", "modulated_conv2d"}


def straightforward_upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int | tuple[int, int] = 1,
                              down: int | tuple[int, int] = 1, padding: int | list[int] = 0,
                              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """upfirdn2d done literally: insert zeros, pad/crop, depthwise conv2d with the 2-D filter, drop samples."""
    up_x, up_y = (up, up) if isinstance(up, int) else up
    down_x, down_y = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = parse_padding(padding)
    f = torch.ones([1, 1], device=x.device) if f is None else f
    if f.ndim == 1:
        f = torch.outer(f, f)
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up_x - 1, 0, 0, 0, up_y - 1]).reshape(n, c, h * up_y, w * up_x)
    x = F.pad(x, [px0, px1, py0, py1])  # negative values crop
    kernel = (f * gain).to(x.dtype)
    kernel = kernel if flip_filter else kernel.flip([0, 1])
    x = F.conv2d(x, kernel[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down_y, ::down_x]


def straightforward_bias_act(x: torch.Tensor, b: torch.Tensor, alpha: float, gain: float,
                             clamp: float) -> torch.Tensor:
    """lrelu bias_act as separate autograd ops."""
    x = F.leaky_relu(x + b.reshape(1, -1, 1, 1), alpha) * gain
    return x.clamp(-clamp, clamp)


@contextlib.contextmanager
def straightforward_resampling() -> Iterator[None]:
    """Run conv2d_resample (and so modulated_conv2d) as the official code does: on ``straightforward_upfirdn2d``
    and in the memory format of the input."""
    originals = conv_module.upfirdn2d, conv_module._nhwc_on_cpu
    conv_module.upfirdn2d = straightforward_upfirdn2d
    conv_module._nhwc_on_cpu = _keep_layout
    try:
        yield
    finally:
        conv_module.upfirdn2d, conv_module._nhwc_on_cpu = originals


def _keep_layout(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, w


def _op_call(op: str, impl: str, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    f = params["filter"]
    if op == "bias_act":
        if impl == "straightforward":
            return straightforward_bias_act(x, params["bias"], 0.2, math.sqrt(2), 256.0)
        return bias_act(x, params["bias"], act="lrelu", clamp=256.0, impl=impl)
    if op == "upsample2d":
        if impl == "straightforward":
            fw, fh = filter_size(f)
            return straightforward_upfirdn2d(x, f, up=2, padding=[(fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2,
                                                                   (fh - 2) // 2], gain=4)
        return upsample2d(x, f, impl=impl)
    if op == "downsample2d":
        if impl == "straightforward":
            fw, fh = filter_size(f)
            return straightforward_upfirdn2d(x, f, down=2, padding=[(fw - 1) // 2, (fw - 2) // 2, (fh - 1) // 2,
                                                                     (fh - 2) // 2])
        return downsample2d(x, f, impl=impl)
    context = straightforward_resampling() if impl == "straightforward" else extension.forced_impl(impl)
    with context:
        if op == "conv2d_resample_up":  # Conv2dLayer(up=2): flip_weight = (up == 1)
            return conv2d_resample(x, params["weight"], f, up=2, padding=1, flip_weight=False)
        if op == "conv2d_resample_down":
            return conv2d_resample(x, params["weight"], f, down=2, padding=1)
        # SynthesisLayer conv0 in training mode: up=2, non-fused, demodulated, with noise
        return modulated_conv2d(x, params["weight"], params["styles"], noise=params["noise"], up=2, padding=1,
                                resample_filter=f, flip_weight=False, fused_modconv=False)


def _conv_alone(op: str, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The bare convolution inside ``op``: 3x3 transposed stride 2 (up) or 3x3 stride 2 on the FIR output (down)."""
    if op == "conv2d_resample_down":
        return F.conv2d(F.pad(x, [1, 0, 1, 0]), weight, stride=2)  # the FIR pass leaves res + 1 pixels
    return F.conv_transpose2d(x, weight, stride=2)


def _params(op: str, channels: int, res: int, batch: int, device: torch.device, dtype: torch.dtype,
            generator: torch.Generator) -> dict[str, torch.Tensor]:
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    params = {"filter": setup_filter([1, 3, 3, 1], device=device), "bias": randn(channels)}
    if op in _CONV_OPS:
        params["weight"] = randn(channels, channels, 3, 3) / math.sqrt(channels * 9)
        params["styles"] = randn(batch, channels) + 1
        params["noise"] = randn(batch, 1, 2 * res, 2 * res) * 0.1
    return params


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time in milliseconds over ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(ops: list[str], shapes: list[tuple[int, int]], batch: int, device: torch.device, dtype: torch.dtype,
        repeats: int, backward: bool) -> list[dict[str, object]]:
    impls = (["cuda"] if device.type == "cuda" else []) + ["ref", "straightforward"]
    rows = []
    generator = torch.Generator().manual_seed(0)
    for op in ops:
        for channels, res in shapes:
            x = torch.randn(batch, channels, res, res, generator=generator).to(device=device, dtype=dtype)
            params = _params(op, channels, res, batch, device, dtype, generator)
            row: dict[str, object] = {"op": op, "shape": f"{batch}x{channels}x{res}x{res}"}
            outputs = {}
            for impl in impls:
                xi = x.detach().requires_grad_(backward)

                def call(xi: torch.Tensor = xi, impl: str = impl, op: str = op,
                         params: dict[str, torch.Tensor] = params) -> torch.Tensor:
                    y = _op_call(op, impl, xi, params)
                    if backward:
                        (grad,) = torch.autograd.grad(y, xi, torch.ones_like(y))
                        return grad
                    return y

                with torch.no_grad() if not backward else contextlib.nullcontext():
                    row[impl] = time_call(call, device, repeats)
                    outputs[impl] = call().float()
            if op in _CONV_OPS:
                row["conv alone"] = min(_time_conv_alone(op, x, params["weight"], layout, device, repeats, backward)
                                        for layout in (torch.contiguous_format, torch.channels_last))
            scale = outputs["straightforward"].abs().max().clamp_min(1e-30)
            row["max_rel_diff"] = max(float((outputs[i] - outputs["straightforward"]).abs().max() / scale)
                                      for i in impls)
            rows.append(row)
            print(_format_row(row, impls), flush=True)
    return rows


def _time_conv_alone(op: str, x: torch.Tensor, weight: torch.Tensor, layout: torch.memory_format,
                     device: torch.device, repeats: int, backward: bool) -> float:
    xi = x.detach().contiguous(memory_format=layout).requires_grad_(backward)
    weight = weight.contiguous(memory_format=layout)

    def call() -> torch.Tensor:
        y = _conv_alone(op, xi, weight)
        return torch.autograd.grad(y, xi, torch.ones_like(y))[0] if backward else y

    with torch.no_grad() if not backward else contextlib.nullcontext():
        return time_call(call, device, repeats)


def _format_row(row: dict[str, object], impls: list[str]) -> str:
    columns = impls + ["conv alone"]
    cells = [str(row["op"]), str(row["shape"])] + [f"{row[i]:.2f}" if i in row else "-" for i in columns]
    cells += [f"{row[i] / row['straightforward']:.2f}x" if i in row else "-"
              for i in columns if i != "straightforward"]
    cells.append(f"{row['max_rel_diff']:.1e}")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {OPS}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-res", type=int, default=256, help="skip shapes above this resolution")
    parser.add_argument("--mode", choices=["fwd", "fwd+bwd", "both"], default="both")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        parser.error(f"unknown ops {unknown}; choose from {OPS}")
    device = torch.device(args.device)
    shapes = [s for s in SHAPES if s[1] <= args.max_res]
    impls = (["cuda"] if device.type == "cuda" else []) + ["ref", "straightforward"]
    columns = impls + ["conv alone"]
    ratios = [f"{i} / straightforward" for i in columns if i != "straightforward"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    modes = ["fwd", "fwd+bwd"] if args.mode == "both" else [args.mode]
    for mode in modes:
        print(f"\n{mode}, {args.dtype}, {name}; median of {args.repeats} (ms)\n")
        print("| op | shape | " + " | ".join(f"{i} ms" for i in columns) + " | " + " | ".join(ratios) +
              " | max rel diff |")
        print("|" + "---|" * (3 + len(columns) + len(ratios)))
        run(ops, shapes, args.batch, device, getattr(torch, args.dtype), args.repeats, backward=mode == "fwd+bwd")
    print(f"\nbench: {len(ops)} ops x {len(shapes)} shapes on {name} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
