"""Model ``flux_cnn``: Conv → flatten → Dense, in Flux (Julia) or its exact PyTorch twin."""

from __future__ import annotations

from ailusion import hookimpl

from .model import FluxCNN


@hookimpl(trylast=True)
def register_models():
    return {"flux_cnn": FluxCNN}
