"""Checkpoints: atomic snapshots, keep-last-N, and exact resume.

A snapshot is one ``torch.save`` file holding only tensors and plain Python data, so it loads with
``torch.load(weights_only=True)`` (no code runs when a file is opened):

    {"format": "genforce-checkpoint", "version": 1, "step": int,
     "modules": {name: state_dict}, "optimizers": {name: state_dict},
     "extra": {...}, "rng": [per-rank RNG states], "config": {...} (optional)}

``modules`` holds every network, EMA copies included (``G_ema``, ``D_ema``); ``extra`` holds whatever else a method
must carry across a restart (InsGen's queues, ADA's p, a sampler position). Writes go to a temporary file in the
same directory, are fsync'ed, then ``os.replace``'d onto the final name, so a crash mid-write leaves the previous
snapshot as the latest complete one.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

from common import dist

FORMAT = "genforce-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file + fsync + ``os.replace`` (all or nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (directory entry) where the OS allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def refusal_reason(err: Exception) -> str:
    """What a weights-only ``torch.load`` refused, in one line, WITHOUT torch's advice to retry with
    ``weights_only=False``: that advice runs the file's pickled code, which no message here may suggest for a file
    of unknown origin."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    elif "weights_only" in text:
        text = ""  # torch's advice alone carries no reason worth repeating
    text = text.split(". This is an internal miniz error")[0]  # the rest is torch's general advice
    return " ".join(text.split()) or type(err).__name__


def check_torch_file(path: Path) -> None:
    """One line for a file that is no ``torch.save`` output at all (a text file, an image): torch.save writes a zip
    archive (``PK``) or, in the legacy format, a pickle (protocol byte 0x80); anything else would only give the
    unpickler's cryptic reason (an 'operand' code, a magic number)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): a truncated download or copy; fetch or write it again")
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CheckpointError(f"{path} is not a PyTorch file (neither a torch.save zip nor a pickle); give a snapshot "
                              ".pt or weights file written by torch.save")


def read_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a weights file (state dict, tensors, plain containers) with one-line
    ``CheckpointError`` messages for a missing, refused (Python objects) or truncated/corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}")
    check_torch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} is not a weights-only file: a safe load refuses it ({refusal_reason(err)})"
                              ) from None
    except Exception as err:  # noqa: BLE001 - torch.load raises KeyError, RuntimeError, ... on damaged files
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({refusal_reason(err)})") from None


def saved_module(ckpt: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    """The state dict of module ``name`` in a loaded snapshot; another package's snapshot is one clear line."""
    modules = ckpt.get("modules", {})
    if name not in modules:
        raise CheckpointError(f"{source} has no module named {name} (it has: {', '.join(modules) or 'none'}); "
                              "is it a snapshot of another package or stage?")
    return modules[name]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a snapshot with ``weights_only=True``; clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    check_torch_file(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} holds Python objects that a weights-only load refuses ({refusal_reason(err)}); "
            "it is not a genforce-papers snapshot. Official StyleGAN2-ADA .pkl files go through "
            "common.stylegan2's importer instead."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch.load raises KeyError, RuntimeError, ... on damaged files
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read ({refusal_reason(err)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a genforce-papers snapshot (no '{FORMAT}' marker)")
    return ckpt


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch (CPU) and CUDA RNG states as weights-only-loadable data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_rng_states() -> list[dict[str, Any]]:
    if not dist.is_distributed():
        return [rng_state()]
    states: list[Any] = [None] * dist.get_world_size()
    torch_dist.all_gather_object(states, rng_state())
    return states


def capture(
    step: int,
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    extra: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A snapshot dict of the training state. Collective under DDP (every rank's RNG is gathered)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "modules": {name: dist.unwrap(module).state_dict() for name, module in modules.items()},
        "optimizers": {name: opt.state_dict() for name, opt in (optimizers or {}).items()},
        "extra": dict(extra or {}),
        "rng": _all_rng_states(),
        "config": dict(config) if config is not None else None,
    }


def load_module_state(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    name: str,
    source: str = "checkpoint",
    new_modules: Sequence[str] = (),
) -> None:
    """Strict ``load_state_dict`` whose error lists missing, unexpected and shape-mismatched keys.

    ``new_modules`` names child modules that ``module`` adds on top of the saved network (a key with such a dotted
    component may be missing from ``state_dict``; it keeps its value), e.g. layers added to a pretrained G.
    """
    own = dist.unwrap(module).state_dict()
    missing = sorted(k for k in set(own) - set(state_dict) if not set(k.split(".")) & set(new_modules))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if hasattr(state_dict[key], "shape") and tuple(state_dict[key].shape) != tuple(own[key].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit module '{name}' (was it saved with another config?)"]
        for title, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    dist.unwrap(module).load_state_dict(state_dict, strict=not new_modules)


def restore(
    ckpt: Mapping[str, Any],
    modules: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    restore_rng: bool = True,
    source: str = "checkpoint",
) -> tuple[int, dict[str, Any]]:
    """Load ``ckpt`` into ``modules``/``optimizers`` (every name must be present) and this rank's RNG.

    Returns ``(step, extra)``.
    """
    for kind, saved, targets in (
        ("module", ckpt["modules"], modules),
        ("optimizer", ckpt["optimizers"], optimizers or {}),
    ):
        absent = sorted(set(targets) - set(saved))
        if absent:
            raise CheckpointError(
                f"{source} has no {kind} named {', '.join(absent)} (it has: {', '.join(saved) or 'none'})"
            )
    for name, module in modules.items():
        load_module_state(module, ckpt["modules"][name], name, source)
    for name, optimizer in (optimizers or {}).items():
        optimizer.load_state_dict(ckpt["optimizers"][name])
    if restore_rng:
        states = ckpt["rng"]
        if len(states) != dist.get_world_size():
            dist.print0(
                f"note: {source} was saved by {len(states)} process(es), now {dist.get_world_size()}; "
                "RNG streams restart from the seed"
            )
        else:
            set_rng_state(states[dist.get_rank()])
    return int(ckpt["step"]), dict(ckpt["extra"])


def _complete_zip(path: Path) -> bool:
    """Whether a snapshot's zip central directory is intact (a cut-off copy or a full disk loses it first)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class CheckpointManager:
    """Numbered snapshots ``<prefix>-<step:09d>.pt`` in a run dir, keeping the newest ``keep_last``."""

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 3, prefix: str = "snapshot") -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.prefix = prefix
        self._pattern = re.compile(rf"^{re.escape(prefix)}-(\d{{9}})\.pt$")

    def path_for(self, step: int) -> Path:
        return self.run_dir / f"{self.prefix}-{step:09d}.pt"

    def snapshots(self) -> list[Path]:
        """Complete snapshots, oldest first (temporary files of interrupted writes never match)."""
        if not self.run_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.run_dir.iterdir() if (m := self._pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        snaps = self.snapshots()
        return snaps[-1] if snaps else None

    def save(self, state: Mapping[str, Any]) -> Path | None:
        """Write ``state`` (from :func:`capture`) on rank 0, then drop snapshots beyond ``keep_last``."""
        if not dist.is_main():
            return None
        path = atomic_save(dict(state), self.path_for(state["step"]))
        for old in self.snapshots()[: -self.keep_last]:
            old.unlink()
        for stale in self.run_dir.glob(f".{self.prefix}-*.tmp-*"):  # left by a process killed mid-write
            if not _pid_alive(stale):
                stale.unlink(missing_ok=True)
        return path


def _pid_alive(tmp: Path) -> bool:
    try:
        pid = int(tmp.name.rsplit("-", 1)[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_resume(path: str | os.PathLike, prefix: str = "snapshot", flag: str = "--resume") -> Path:
    """A snapshot file as given, or the latest snapshot inside a run dir; messages name the CLI ``flag``."""
    path = Path(path)
    if path.is_dir():
        snaps = CheckpointManager(path, prefix=prefix).snapshots()
        if not snaps:
            raise CheckpointError(f"{flag} {path}: the run dir holds no {prefix}-*.pt snapshot yet")
        complete = [snap for snap in snaps if _complete_zip(snap)]
        if not complete:
            raise CheckpointError(f"{flag} {path}: every {prefix}-*.pt snapshot there is truncated or corrupt "
                                  f"({', '.join(s.name for s in snaps)}); the run has to start again")
        if complete[-1] != snaps[-1]:
            skipped = ", ".join(s.name for s in snaps if s not in complete and s.name > complete[-1].name)
            dist.print0(f"{flag} {path}: {skipped} truncated or corrupt; using {complete[-1].name}")
        return complete[-1]
    if not path.is_file():
        raise CheckpointError(f"{flag} {path}: no such file or run dir")
    return path
