"""ailusion: text prompts → Stable Diffusion → preprocessing → a Flux CNN, as pluggy plugins
composed and swept with Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hookspecs import hookimpl, hookspec

if TYPE_CHECKING:  # pragma: no cover
    from .api import run, train

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "run", "train", "__version__"]


def __getattr__(name: str):
    # `ailusion.run` imports the pipeline (and numpy) only when it is used.
    if name in ("run", "train"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ailusion' has no attribute {name!r}")
