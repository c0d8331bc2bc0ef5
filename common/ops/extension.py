"""Building, loading and choosing the CUDA kernels of ``common/ops/csrc``.

Each op (``bias_act``, ``upfirdn2d``) is one torch extension: a host binding (``<op>.cpp``, compiled once by the
host compiler with the torch headers) and the kernels (``<op>.cu``, light headers, compiled by nvcc once per GPU
architecture). It is built on first use with ``torch.utils.cpp_extension.load`` (ninja) into
``$TORCH_EXTENSIONS_DIR/genforce_ops/<key>/<op>`` or ``~/.cache/genforce_ops/<key>/<op>``, where ``<key>`` names
the torch, CUDA and Python versions, so a second run only re-checks timestamps. The library registers the torch
operator ``torch.ops.genforce_ops_<op>.<op>`` (no Python module, no pybind11).

Toolkit: ``$CUDA_HOME`` if set, else the root that ``nvcc`` on the PATH really belongs to (``nvcc --dryrun`` prints
it as ``TOP``; on wrapper installs such as ``/usr/local/bin/nvcc`` -> ``/usr/local/cuda-13.0/bin/nvcc`` torch's own
guess is ``/usr/local``, which has no CUDA runtime library to link against), else ``/usr/local/cuda``.
Architectures: ``$TORCH_CUDA_ARCH_LIST`` if set, else every ``sm_XY`` of ``torch.cuda.get_arch_list()`` that the
toolkit can compile for, whether or not a GPU is present.

Dispatch (``select_backend``): ``impl`` argument, else ``$COMMON_OPS_IMPL``, else ``'auto'``. ``'auto'`` runs the
CUDA kernel for CUDA tensors when the extension builds and the reference PyTorch path otherwise; a failed build
warns once, naming the file that holds the compiler output. ``'ref'`` always runs the reference path; ``'cuda'``
always runs the kernel and raises instead of falling back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
OPS = ("bias_act", "upfirdn2d")
IMPL_ENV = "COMMON_OPS_IMPL"
IMPLS = ("auto", "ref", "cuda")
CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_NVCC_TIMEOUT_S = 60

_lock = threading.Lock()
_loaded: dict[str, bool] = {}
_errors: dict[str, Path] = {}


@dataclass(frozen=True)
class BuildResult:
    """Outcome of building one op: ``error_file`` holds the compiler output when ``ok`` is False."""

    op: str
    ok: bool
    seconds: float
    error_file: Path | None = None
    reason: str = ""


def cache_dir() -> Path:
    """Build root for this torch/CUDA/Python combination (``$TORCH_EXTENSIONS_DIR`` is respected)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    base = Path(root) / "genforce_ops" if root else Path.home() / ".cache" / "genforce_ops"
    key = f"torch{torch.__version__}-cu{torch.version.cuda}-py{sys.version_info.major}{sys.version_info.minor}"
    return base / re.sub(r"[^A-Za-z0-9_.+-]", "_", key)


def nvcc_root(nvcc: str) -> Path | None:
    """The toolkit root an ``nvcc`` executable belongs to, from the ``TOP=`` line of ``nvcc --dryrun``."""
    try:
        proc = subprocess.run([nvcc, "--dryrun", "-E", "-x", "cu", os.devnull], capture_output=True, text=True,
                              timeout=_NVCC_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", proc.stdout + proc.stderr, flags=re.MULTILINE)
    return Path(os.path.realpath(match.group(1).strip())) if match else None


def find_cuda_home() -> Path | None:
    """``$CUDA_HOME``, else the real root of ``nvcc`` on the PATH, else ``/usr/local/cuda``; None if none exists."""
    if os.environ.get("CUDA_HOME"):
        return Path(os.environ["CUDA_HOME"])
    nvcc = shutil.which("nvcc")
    if nvcc:
        root = nvcc_root(nvcc)
        if root is not None:
            return root
    default = Path("/usr/local/cuda")
    return Path(os.path.realpath(default)) if (default / "bin" / "nvcc").exists() else None


def cuda_arch_flags(cuda_home: Path) -> list[str]:
    """``-gencode`` flags for every ``sm_XY`` torch was built for that this nvcc supports ([] if the user set
    ``TORCH_CUDA_ARCH_LIST``, which torch then applies itself)."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return []
    archs = [a.split("_", 1)[1] for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
    try:
        listed = subprocess.run([str(cuda_home / "bin" / "nvcc"), "--list-gpu-arch"], capture_output=True,
                                text=True, timeout=_NVCC_TIMEOUT_S).stdout.split()
    except (OSError, subprocess.SubprocessError):
        listed = []
    if listed:
        archs = [a for a in archs if f"compute_{a}" in listed]
    return [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]


def _prepare_toolchain(cuda_home: Path) -> None:
    """Point cpp_extension at the real toolkit and make the ninja of this environment findable."""
    os.environ["CUDA_HOME"] = str(cuda_home)  # before the first import of cpp_extension, which guesses at import
    torch_logger = logging.getLogger("torch.utils.cpp_extension")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)  # its "No CUDA runtime is found" note is expected on GPU-less build hosts
    try:
        from torch.utils import cpp_extension
    finally:
        torch_logger.setLevel(level)

    cpp_extension.CUDA_HOME = str(cuda_home)  # read at call time; its import-time guess may be wrong (see above)
    if shutil.which("ninja") is None:
        bin_dirs = [Path(sys.executable).parent]
        try:
            import ninja

            bin_dirs.insert(0, Path(ninja.BIN_DIR))
        except ImportError:
            pass
        found = [str(d) for d in bin_dirs if (d / "ninja").exists()]
        os.environ["PATH"] = os.pathsep.join(found + [os.environ.get("PATH", "")])


def build(op: str, verbose: bool = False) -> BuildResult:
    """Compile (or re-check) the extension of ``op`` and load it into this process."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    start = time.perf_counter()
    build_dir = cache_dir() / op
    build_dir.mkdir(parents=True, exist_ok=True)
    error_file = build_dir / "build_error.log"
    cuda_home = find_cuda_home()
    reason = ""
    if torch.version.cuda is None:
        reason = f"torch {torch.__version__} was built without CUDA"
    elif cuda_home is None:
        reason = "no CUDA toolkit found (set CUDA_HOME or put nvcc on the PATH)"
    if reason:
        error_file.write_text(reason + "\n")
        return BuildResult(op, False, time.perf_counter() - start, error_file, reason)
    try:
        _prepare_toolchain(cuda_home)
        from torch.utils import cpp_extension

        cpp_extension.load(
            name=f"genforce_ops_{op}",
            sources=[str(CSRC / f"{op}.cpp"), str(CSRC / f"{op}.cu")],
            extra_cflags=["-O3"],
            extra_cuda_cflags=["-O3", *cuda_arch_flags(cuda_home)],
            extra_include_paths=[str(CSRC)],
            build_directory=str(build_dir),
            with_cuda=True,
            is_python_module=False,
            verbose=verbose,
        )
    except Exception as exc:  # any build or load failure: fall back and keep the log
        error_file.write_text(f"CUDA_HOME={cuda_home}\n{type(exc).__name__}: {exc}\n")
        return BuildResult(op, False, time.perf_counter() - start, error_file, f"{type(exc).__name__}")
    error_file.unlink(missing_ok=True)
    return BuildResult(op, True, time.perf_counter() - start)


def plugin_available(op: str) -> bool:
    """Build/load ``op`` once per process; on failure warn once (naming the compiler output file) and return False."""
    with _lock:
        if op not in _loaded:
            result = build(op)
            _loaded[op] = result.ok
            if not result.ok:
                _errors[op] = result.error_file
                warnings.warn(f"common.ops: the CUDA kernels of {op} did not build ({result.reason}); using the "
                              f"reference PyTorch path. Compiler output: {result.error_file}", RuntimeWarning,
                              stacklevel=3)
        return _loaded[op]


def resolve_impl(impl: str | None) -> str:
    """``impl``, else ``$COMMON_OPS_IMPL``, else ``'auto'``; validated."""
    choice = impl or os.environ.get(IMPL_ENV) or "auto"
    if choice not in IMPLS:
        source = "impl" if impl else f"${IMPL_ENV}"
        raise ValueError(f"{source}={choice!r}; expected one of {IMPLS}")
    return choice


def select_backend(op: str, x: torch.Tensor, impl: str | None, cuda_supported: bool = True) -> str:
    """``'cuda'`` or ``'ref'`` for running ``op`` on ``x`` (see the module docstring for the rules).

    ``cuda_supported`` is False for argument combinations the kernel does not cover (e.g. a filter that needs
    gradients); ``'auto'`` then uses the reference path and ``'cuda'`` raises.
    """
    choice = resolve_impl(impl)
    if choice == "ref":
        return "ref"
    usable = x.is_cuda and x.dtype in CUDA_DTYPES and cuda_supported
    if choice == "auto":
        return "cuda" if usable and plugin_available(op) else "ref"
    if not usable:
        raise ValueError(f"{op}: impl='cuda' needs a CUDA tensor of dtype {CUDA_DTYPES} and arguments the kernel "
                         f"supports; got a {x.dtype} tensor on {x.device}")
    if not plugin_available(op):
        raise RuntimeError(f"{op}: impl='cuda' was requested but the kernels did not build; see {_errors[op]}")
    return "cuda"


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for 4-D tensors laid out NHWC (and not also NCHW), else contiguous_format."""
    channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def kernel(op: str):
    """The registered torch operator of a loaded extension, e.g. ``kernel('upfirdn2d')(x, f, ...)``."""
    return getattr(getattr(torch.ops, f"genforce_ops_{op}"), op)


@contextlib.contextmanager
def forced_impl(impl: str) -> Iterator[None]:
    """Select a path ('ref', 'cuda' or 'auto') for every op, through ``$COMMON_OPS_IMPL``, inside the block.

    ``conv2d_resample`` and ``modulated_conv2d`` take no ``impl`` argument; benchmarks and the GPU check use this.
    """
    previous = os.environ.get(IMPL_ENV)
    os.environ[IMPL_ENV] = impl
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(IMPL_ENV, None)
        else:
            os.environ[IMPL_ENV] = previous
