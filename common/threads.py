"""CPU thread count for tiny presets and tests.

On the project's 2-core machines small tensor ops ran 10-30x slower with 2 intra-op threads than with 1
(thread hand-off dominates tiny convolutions), so every CLI defaults to ONE intra-op thread on CPU. Override with
``GENFORCE_NUM_THREADS=N`` (or ``--threads`` where a CLI offers it); ``0`` leaves torch's own default.
To use both cores, run two processes (e.g. the baseline and the method arm of a reproduction) side by side.
GPU runs are unaffected: the value only limits CPU math.
"""

from __future__ import annotations

import os

import torch

DEFAULT_CPU_THREADS = 1


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``num_threads``, else ``$GENFORCE_NUM_THREADS``, else 1. Returns the count."""
    if num_threads is None:
        num_threads = int(os.environ.get("GENFORCE_NUM_THREADS", DEFAULT_CPU_THREADS))
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()
