"""Wall-clock timing for the benchmarks: medians of repeated calls, CUDA synchronised."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(function: Callable[[], object], reps: int, device: torch.device) -> float:
    """Median wall seconds of ``function()`` over ``reps`` calls after one warm-up call (on CUDA, the device is
    synchronised before and after each call)."""
    function()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
