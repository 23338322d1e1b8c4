"""Preprocessor ``image``: resize, scale to [0, 1], normalize, optionally grayscale."""

from __future__ import annotations

from ailusion import hookimpl

from .preprocessor import ImagePreprocessor

__all__ = ["ImagePreprocessor"]


@hookimpl(trylast=True)
def register_preprocessors():
    """The ``image`` preprocessor; ``trylast`` so that a third-party ``image`` wins."""
    return {"image": ImagePreprocessor}
