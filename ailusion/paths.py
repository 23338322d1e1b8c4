"""Where ailusion keeps files that outlive a run."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$AILUSION_CACHE`` or the user cache dir (``~/.cache/ailusion`` on Linux)."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("AILUSION_CACHE") or user_cache_dir("ailusion"))
