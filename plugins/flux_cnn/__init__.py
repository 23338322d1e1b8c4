"""Model ``flux_cnn``: Conv → [pooling] → flatten → Dense, in Flux (Julia) or its PyTorch twin."""

from __future__ import annotations

from ailusion import hookimpl

from .model import FluxCNN


@hookimpl(trylast=True)
def register_models():
    """The ``flux_cnn`` model (``model=flux_cnn``, the default)."""
    return {"flux_cnn": FluxCNN}
