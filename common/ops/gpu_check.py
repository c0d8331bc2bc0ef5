"""CUDA kernels vs the reference path on a CUDA machine: ``python -m common.ops.gpu_check``.

Builds the kernels, then for every op over a grid of shapes, dtypes, up/down factors, paddings, filters and
activations compares the CUDA path with the reference path: forward output, first-order gradients (inputs and bias)
and second-order gradients (the gradient of <grad, v>, what R1 and path-length regularisation differentiate).
Prints the largest error per op and dtype relative to the largest reference value, and exits 1 if one exceeds the
dtype's tolerance, 2 if there is no CUDA device. ``--device cpu --impl ref`` runs the same harness on the CPU
against itself (used by the tests to keep this script working where no GPU is available).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from common.ops import extension
from common.ops.activation import ACTIVATIONS, bias_act
from common.ops.conv import conv2d_resample
from common.ops.modconv import modulated_conv2d
from common.ops.resample import setup_filter, upfirdn2d

# Relative tolerance (error / max |reference|): float64 and float32 allow for a different summation order over up to
# 64 taps, half types for a few roundings of the output (eps 2^-10 and 2^-7).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 8e-3, torch.bfloat16: 6e-2}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@dataclass
class Case:
    """One comparison: ``fn(impl, *inputs)`` with differentiable ``inputs``."""

    op: str
    name: str
    fn: Callable[..., torch.Tensor]
    inputs: list[torch.Tensor]
    dtype: torch.dtype
    second_order: bool = True


@dataclass
class Report:
    errors: dict[tuple[str, str], dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    failures: list[str] = field(default_factory=list)

    def add(self, case: Case, kind: str, test: torch.Tensor, ref: torch.Tensor) -> None:
        scale = ref.detach().abs().max().double().clamp_min(1e-30)
        err = float((test.detach().double() - ref.detach().double()).abs().max() / scale) if ref.numel() else 0.0
        if not math.isfinite(err) and bool(torch.isfinite(ref).all()):
            err = math.inf
        key = (case.op, str(case.dtype).replace("torch.", ""))
        self.errors[key][kind] = max(self.errors[key].get(kind, 0.0), err)
        if err > TOLERANCE[case.dtype]:
            self.failures.append(f"{case.op} {case.name} {key[1]} {kind}: {err:.2e} > {TOLERANCE[case.dtype]:.0e}")


def _evaluate(case: Case, impl: str) -> list[torch.Tensor]:
    """[y, grads..., second-order grads...] for one implementation, with fixed random cotangents."""
    inputs = [t.detach().clone().requires_grad_(True) for t in case.inputs]
    y = case.fn(impl, *inputs)
    gen = torch.Generator(device=y.device).manual_seed(1)
    dy = torch.randn(y.shape, generator=gen, device=y.device).to(y.dtype).requires_grad_(True)
    grads = torch.autograd.grad(y, inputs, dy, create_graph=case.second_order)
    results = [y, *grads]
    if case.second_order:
        vs = [torch.randn(g.shape, generator=gen, device=g.device).to(g.dtype) for g in grads]
        inner = sum((g * v).sum() for g, v in zip(grads, vs))
        seconds = torch.autograd.grad(inner, [dy, *inputs], allow_unused=True)
        results += [s if s is not None else torch.zeros_like(t) for s, t in zip(seconds, [dy, *inputs])]
    return results


def compare(case: Case, impl: str, report: Report) -> None:
    test, ref = _evaluate(case, impl), _evaluate(case, "ref")
    kinds = ["forward"] + ["grad"] * len(case.inputs) + (["grad2"] * (1 + len(case.inputs)) if case.second_order
                                                          else [])
    for kind, a, b in zip(kinds, test, ref):
        report.add(case, kind, a, b)


def bias_act_cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> Iterator[Case]:
    gen = torch.Generator().manual_seed(0)
    shapes = [((2, 8, 5, 7), 1, False), ((4, 32, 16, 16), 1, True), ((3, 6), 1, False), ((2, 3, 9), 2, False)]
    acts = ["lrelu", "tanh"] if quick else list(ACTIVATIONS)
    for dtype, (shape, dim, channels_last), act, clamp in itertools.product(dtypes, shapes, acts, [None, 0.8]):
        x = (torch.randn(shape, generator=gen) * 2).to(device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        b = torch.randn(shape[dim], generator=gen).to(device=device, dtype=dtype)

        def fn(impl: str, x: torch.Tensor, b: torch.Tensor, act: str = act, dim: int = dim,
               clamp: float | None = clamp) -> torch.Tensor:
            return bias_act(x, b, dim=dim, act=act, clamp=clamp, impl=impl)

        yield Case("bias_act", f"{act} {shape} clamp={clamp}", fn, [x, b], dtype)


def upfirdn2d_cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> Iterator[Case]:
    gen = torch.Generator().manual_seed(0)
    filters = {"4x4": setup_filter([1, 3, 3, 1]), "3x5": torch.rand(3, 5, generator=gen),
               "sep12": setup_filter(torch.rand(12, generator=gen)), "1x1": setup_filter(None)}
    factors = [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1), (1, 4), ((2, 1), (1, 2))]
    paddings = [0, [2, 1, 2, 1], [-1, 3, 2, -2], [5, 5, 0, 0]]
    if quick:
        factors, paddings = factors[:4], paddings[:2]
    for dtype, (fname, f), (up, down), padding, flip in itertools.product(dtypes, filters.items(), factors,
                                                                          paddings, [False, True]):
        for shape, channels_last in [((2, 3, 11, 9), False), ((2, 16, 13, 16), True)]:
            x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            f_dev = f.to(device)

            def fn(impl: str, x: torch.Tensor, f: torch.Tensor = f_dev, up=up, down=down, padding=padding,
                   flip: bool = flip) -> torch.Tensor:
                return upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5, impl=impl)

            try:
                fn("ref", x)
            except (ValueError, RuntimeError):  # geometry with an empty output: nothing to compare
                continue
            yield Case("upfirdn2d", f"{fname} up={up} down={down} pad={padding} flip={flip} {shape}", fn, [x], dtype)


def conv_cases(device: torch.device, dtypes: list[torch.dtype], quick: bool) -> Iterator[Case]:
    """conv2d_resample and modulated_conv2d, whose resampling runs on upfirdn2d (selected by $COMMON_OPS_IMPL)."""
    gen = torch.Generator().manual_seed(0)
    f = setup_filter([1, 3, 3, 1]).to(device)
    configs = [(2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 2, 1), (2, 2, 3)]
    for dtype, (up, down, k) in itertools.product(dtypes, configs[:2] if quick else configs):
        x = torch.randn(2, 8, 12, 12, generator=gen).to(device=device, dtype=dtype)
        w = (torch.randn(6, 8, k, k, generator=gen) / math.sqrt(8 * k * k)).to(device=device, dtype=dtype)
        s = (torch.randn(2, 8, generator=gen) + 1).to(device=device, dtype=dtype)

        def conv(impl: str, x: torch.Tensor, w: torch.Tensor, up: int = up, down: int = down,
                 k: int = k) -> torch.Tensor:
            with extension.forced_impl(impl):
                return conv2d_resample(x, w, f, up=up, down=down, padding=k // 2)

        def modconv(impl: str, x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, up: int = up, down: int = down,
                    k: int = k) -> torch.Tensor:
            with extension.forced_impl(impl):
                return modulated_conv2d(x, w, s, up=up, down=down, padding=k // 2, resample_filter=f,
                                        fused_modconv=False)

        yield Case("conv2d_resample", f"up={up} down={down} k={k}", conv, [x, w], dtype)
        yield Case("modulated_conv2d", f"up={up} down={down} k={k}", modconv, [x, w, s], dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--impl", default="cuda", choices=["cuda", "ref"], help="path to test against 'ref'")
    parser.add_argument("--quick", action="store_true", help="a small subset of the grid")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device available; the CUDA kernels can only be checked on a GPU machine "
              "(`python -m common.ops.build` still compile-checks them).")
        return 2
    if args.impl == "cuda":
        for op in extension.OPS:
            result = extension.build(op)
            print(f"build {op}: {'ok' if result.ok else 'FAILED, see ' + str(result.error_file)} "
                  f"({result.seconds:.1f} s)")
            if not result.ok:
                return 1
    dtypes = DTYPES if device.type == "cuda" else [torch.float32, torch.float64]
    report = Report()
    count = 0
    for make in (bias_act_cases, upfirdn2d_cases, conv_cases):
        for case in make(device, dtypes, args.quick):
            compare(case, args.impl, report)
            count += 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{args.impl} vs ref on {name}: largest error / max|ref| over {count} cases\n")
    print("| op | dtype | forward | grad | grad2 | tolerance |")
    print("|---|---|---|---|---|---|")
    for (op, dtype), errs in sorted(report.errors.items()):
        cells = [f"{errs[k]:.1e}" if k in errs else "-" for k in ("forward", "grad", "grad2")]
        print(f"| {op} | {dtype} | " + " | ".join(cells) + f" | {TOLERANCE[getattr(torch, dtype)]:.0e} |")
    if report.failures:
        print(f"\ngpu_check: {len(report.failures)} FAILED comparisons:")
        print("\n".join(report.failures[:50]))
        return 1
    print(f"\ngpu_check: all {count} cases within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
