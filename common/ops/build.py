"""Compile every CUDA kernel of common.ops and report per op: ``python -m common.ops.build [--verbose]``.

Works without a GPU (it compiles for every architecture torch supports, see ``common.ops.extension``). Exits 0 when
every op built, 1 when one failed (its compiler output is in the file named in the report), 2 when no CUDA toolkit
was found.
"""

from __future__ import annotations

import argparse
import sys

import torch

from common.ops import extension


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    args = parser.parse_args(argv)
    cuda_home = extension.find_cuda_home()
    if cuda_home is None or torch.version.cuda is None:
        print("common.ops.build: no CUDA toolkit found (set CUDA_HOME or put nvcc on the PATH) or torch was built "
              "without CUDA; nothing built")
        return 2
    archs = extension.cuda_arch_flags(cuda_home)
    print(f"toolkit: {cuda_home}")
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}); architectures: "
          f"{' '.join(a.rsplit('=', 1)[-1] for a in archs) or 'from TORCH_CUDA_ARCH_LIST'}")
    print(f"build directory: {extension.cache_dir()}")
    results = []
    for op in extension.OPS:
        result = extension.build(op, verbose=args.verbose)
        results.append(result)
        status = "ok" if result.ok else f"FAILED ({result.reason}); compiler output: {result.error_file}"
        print(f"  {op:<10} {result.seconds:7.1f} s  {status}", flush=True)
    failed = [r.op for r in results if not r.ok]
    print(f"common.ops.build: {len(results) - len(failed)}/{len(results)} ops built"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
