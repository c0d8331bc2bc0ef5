"""common.timing: one warm-up call, then the median of the timed ones."""

from __future__ import annotations

import time

import torch

from common.timing import median_seconds


def test_median_of_the_timed_calls_after_one_warm_up():
    durations = iter([0.05, 0.0, 0.02, 0.0])  # the warm-up's 0.05 s is not counted
    calls = []

    def work():
        calls.append(1)
        time.sleep(next(durations))

    assert median_seconds(work, reps=3, device=torch.device("cpu")) < 0.015
    assert len(calls) == 4
