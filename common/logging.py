"""Training logs: a tqdm progress bar with throughput, JSONL scalars, optional TensorBoard.

Only rank 0 writes; other ranks get silent objects, so call sites need no rank checks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from tqdm import tqdm

from common import dist

T = TypeVar("T")


class Progress:
    """A progress bar over ``total`` images (or steps) that shows throughput as ``img/s``.

    ``update(n, **scalars)`` advances by ``n`` and shows the given scalars beside the rate.
    """

    def __init__(self, total: int, desc: str = "train", unit: str = "img", initial: int = 0) -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            unit_scale=True,
            dynamic_ncols=True,
            disable=not dist.is_main() or os.environ.get("GENFORCE_NO_PROGRESS") == "1",
        )
        self._start = time.perf_counter()
        self._done = 0

    def update(self, n: int, **scalars: float) -> None:
        self._done += n
        if scalars:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)
        self._bar.update(n)

    @property
    def rate(self) -> float:
        """Items per second since this bar was created."""
        elapsed = time.perf_counter() - self._start
        return self._done / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def progress(items: Iterable[T], total: int, desc: str, unit: str = "it", step: Callable[[T], int] | None = None
             ) -> Iterator[T]:
    """``items`` with a :class:`Progress` bar of ``total`` (advanced by ``step(item)``, default 1 per item)."""
    with Progress(total=total, desc=desc, unit=unit) as bar:
        for item in items:
            yield item
            bar.update(step(item) if step is not None else 1)


class ScalarLogger:
    """Appends ``{"step": s, **scalars}`` lines to ``<run_dir>/stats.jsonl``; mirrors to TensorBoard if installed."""

    def __init__(self, run_dir: str | os.PathLike, filename: str = "stats.jsonl", tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / filename
        self._writer: Any = None
        if dist.is_main() and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, **scalars: float) -> None:
        if not dist.is_main():
            return
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def drop_records_after(path: str | os.PathLike, key: str, limit: float) -> int:
    """Remove the JSON lines of ``path`` whose ``key`` exceeds ``limit`` (what a crashed run logged after the
    snapshot it resumes from); returns how many. A missing file is left missing."""
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if not line.strip() or json.loads(line).get(key, float("-inf")) <= limit + 1e-9]
    if len(kept) != len(lines):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return len(lines) - len(kept)


def read_scalars(path: str | os.PathLike) -> list[dict[str, float]]:
    """All records of a ``stats.jsonl`` file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
