"""Preprocessor ``image``: resize, scale to [0, 1], normalize, optionally grayscale."""

from __future__ import annotations

from ailusion import hookimpl

from .options import ImageConfig
from .preprocessor import ImagePreprocessor

__all__ = ["ImagePreprocessor"]


@hookimpl(trylast=True)
def register_preprocessors():
    """The ``image`` preprocessor; ``trylast`` so that a third-party ``image`` wins."""
    return {"image": ImagePreprocessor}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``preprocessor`` node when its plugin is ``image``."""
    return {"preprocessor/image": ImageConfig}
