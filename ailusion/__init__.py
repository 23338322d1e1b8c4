"""ailusion: text prompts → Stable Diffusion → preprocessing → a Flux CNN, as pluggy plugins
composed and swept with Hydra."""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING


def _source_tree() -> str | None:
    """The clone's root when this package is the source tree's ``ailusion/`` (whose ``conf``,
    ``plugins`` and ``julia`` sit beside it, where a wheel has them inside); ``None`` when it is
    an installed copy."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    if _os.path.isdir(_os.path.join(here, "conf")):
        return None
    beside = ("conf", "plugins", "julia", "pyproject.toml")
    return root if all(_os.path.exists(_os.path.join(root, name)) for name in beside) else None


#: The clone's root when ailusion runs from its source tree, installed or not: then the
#: subpackages ``ailusion.conf``, ``ailusion.plugins`` and ``ailusion.julia`` are the root's
#: ``conf/``, ``plugins/`` and ``julia/``, as in a wheel (pyproject.toml's package-dir), and the
#: default plugins are registered from pyproject.toml when no installed copy lists them.
SOURCE_TREE = _source_tree()
if SOURCE_TREE is not None:
    __path__.append(SOURCE_TREE)

from .hookspecs import hookimpl, hookspec  # noqa: E402

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
