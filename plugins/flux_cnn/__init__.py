"""Model ``flux_cnn``: Conv → [pooling] → flatten → Dense, in Flux (Julia) or its PyTorch twin."""

from __future__ import annotations

from ailusion import hookimpl

from .model import FluxCNN, FluxCNNConfig


@hookimpl(trylast=True)
def register_models():
    """The ``flux_cnn`` model (``model=flux_cnn``, the default)."""
    return {"flux_cnn": FluxCNN}


@hookimpl(trylast=True)
def register_config_schemas():
    """The keys and types of the ``model`` node when its plugin is ``flux_cnn``."""
    return {"model/flux_cnn": FluxCNNConfig}
