"""CUDA kernel build (compile-only where there is no GPU), toolkit discovery, dispatch rules, gpu_check harness."""

import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from common.ops import extension, gpu_check, upfirdn2d

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cuda_kernels_compile():
    """Fails CI when a kernel no longer compiles. First run: a few minutes; later runs reuse the build cache."""
    if torch.version.cuda is None or extension.find_cuda_home() is None:
        pytest.skip("no CUDA toolkit (nvcc) or a CPU-only torch on this machine: compile check of common/ops/csrc "
                    "skipped")
    proc = subprocess.run([sys.executable, "-m", "common.ops.build"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for op in extension.OPS:
        assert any(line.split()[:1] == [op] and line.rstrip().endswith("ok") for line in proc.stdout.splitlines()), \
            proc.stdout


def _fake_toolkit(tmp_path: Path) -> Path:
    """A toolkit root whose nvcc prints a dryrun TOP line, reached through a wrapper script elsewhere on the PATH."""
    root = tmp_path / "cuda-13.0"
    (root / "bin").mkdir(parents=True)
    real = root / "bin" / "nvcc"
    real.write_text(f'#!/bin/sh\necho "#$ _HERE_={root}/bin" >&2\necho "#$ TOP={root}/bin/.." >&2\n')
    wrapper_dir = tmp_path / "wrapper"
    wrapper_dir.mkdir()
    (wrapper_dir / "nvcc").write_text(f'#!/bin/sh\nexec {real} "$@"\n')
    for script in (real, wrapper_dir / "nvcc"):
        script.chmod(0o755)
    return root


def test_toolkit_root_comes_from_nvcc_dryrun(tmp_path, monkeypatch):
    root = _fake_toolkit(tmp_path)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'wrapper'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert extension.find_cuda_home() == root.resolve()
    monkeypatch.setenv("CUDA_HOME", "/opt/somewhere/cuda")
    assert extension.find_cuda_home() == Path("/opt/somewhere/cuda")


def test_cache_directory_is_keyed_by_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    path = extension.cache_dir()
    assert path.parent == tmp_path / "genforce_ops"
    assert f"cu{torch.version.cuda}" in path.name and f"py{sys.version_info.major}{sys.version_info.minor}" in path.name


def test_impl_selection(monkeypatch):
    x = torch.zeros(1, 1, 4, 4)
    monkeypatch.delenv(extension.IMPL_ENV, raising=False)
    assert extension.select_backend("upfirdn2d", x, None) == "ref"  # CPU tensors never need the extension
    assert extension.select_backend("upfirdn2d", x, "ref") == "ref"
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        extension.select_backend("upfirdn2d", x, "cuda")
    monkeypatch.setenv(extension.IMPL_ENV, "cuda")
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        upfirdn2d(x, None)
    assert upfirdn2d(x, None, impl="ref").shape == x.shape  # the argument wins over the environment
    monkeypatch.setenv(extension.IMPL_ENV, "fast")
    with pytest.raises(ValueError, match=r"\$COMMON_OPS_IMPL='fast'"):
        extension.resolve_impl(None)


def test_failed_build_warns_once_naming_the_log_and_falls_back(tmp_path, monkeypatch):
    log = tmp_path / "build_error.log"
    log.write_text("upfirdn2d.cu(12): error: identifier undefined\n")
    calls = []

    def failing_build(op, verbose=False):
        calls.append(op)
        return extension.BuildResult(op, False, 0.1, log, "RuntimeError")

    monkeypatch.setattr(extension, "build", failing_build)
    monkeypatch.setattr(extension, "_loaded", {})
    monkeypatch.setattr(extension, "_errors", {})
    with pytest.warns(RuntimeWarning, match=str(log)):
        assert extension.plugin_available("upfirdn2d") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert extension.plugin_available("upfirdn2d") is False  # no second warning, no second build
    assert calls == ["upfirdn2d"]
    cuda_tensor = SimpleNamespace(is_cuda=True, dtype=torch.float32, device="cuda:0")  # what dispatch looks at
    assert extension.select_backend("upfirdn2d", cuda_tensor, None) == "ref"  # auto: falls back
    with pytest.raises(RuntimeError, match="build_error.log"):
        extension.select_backend("upfirdn2d", cuda_tensor, "cuda")  # forced: no silent fallback


def test_build_reports_a_missing_toolkit(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(extension, "find_cuda_home", lambda: None)
    result = extension.build("bias_act")
    assert not result.ok and "no CUDA toolkit" in result.error_file.read_text()


def test_gpu_check_exits_2_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert gpu_check.main([]) == 2


def test_gpu_check_harness_runs_on_cpu(capsys):
    """The harness itself (cases, first and second-order comparisons, report) on CPU: ref against ref."""
    assert gpu_check.main(["--device", "cpu", "--impl", "ref", "--quick"]) == 0
    out = capsys.readouterr().out
    for op in ("bias_act", "upfirdn2d", "conv2d_resample", "modulated_conv2d"):
        assert f"| {op} | float32 |" in out
