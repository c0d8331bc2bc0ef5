"""Where generated data and caches live.

Offline datasets the project generates (tiny presets, tests) are cached under ``data/`` at the repository
root (git-ignored). ``GENFORCE_DATA_DIR`` moves that cache, e.g. to a scratch disk on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The cache folder for generated datasets: ``$GENFORCE_DATA_DIR`` or ``<repo>/data``."""
    override = os.environ.get("GENFORCE_DATA_DIR")
    path = Path(override) if override else REPO_ROOT / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path
