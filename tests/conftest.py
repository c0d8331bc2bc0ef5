"""Suite-wide settings: one intra-op thread (see common/threads.py), no progress bars in test logs."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GENFORCE_NUM_THREADS", "1")
os.environ.setdefault("GENFORCE_NO_PROGRESS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
