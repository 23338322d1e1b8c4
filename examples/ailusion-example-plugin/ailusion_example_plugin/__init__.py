"""Preprocessor ``edges``: an example third-party ailusion plugin.

Three hooks: ``register_preprocessors`` names the stage, ``register_config_schemas`` declares the
keys of its config node (so ``preprocessor.szie=64`` fails naming ``size``, and ``size`` arrives
as an int), and ``config_searchpath`` hands Hydra this package's ``conf/`` so that
``preprocessor=edges`` is a config option like the built-in ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ailusion import hookimpl
from ailusion.errors import ConfigError


@dataclass
class EdgesConfig:
    """The keys of ``conf/preprocessor/edges.yaml`` and their types."""

    size: int = 224


class EdgesPreprocessor:
    """Grayscale → edge filter → bicubic resize to ``size``×``size`` → float32 in [0, 1]."""

    def __init__(self, config, context):
        # Validate only: the pipeline builds every stage before any work starts.
        if config.size <= 0:
            raise ConfigError("preprocessor.size", f"must be positive, got {config.size}")
        self.size = config.size
        self.output_shape = (1, self.size, self.size)

    def settings(self) -> dict:
        return {"edges": True, "size": self.size}

    def preprocess(self, images):
        import numpy as np
        from PIL import Image, ImageFilter

        out = np.empty((len(images), *self.output_shape), dtype=np.float32)
        for i, image in enumerate(images):
            edges = image.convert("L").filter(ImageFilter.FIND_EDGES)
            out[i, 0] = np.asarray(edges.resize((self.size, self.size), Image.BICUBIC)) / 255
        return out

    def to_image(self, array):
        import numpy as np
        from PIL import Image

        return Image.fromarray(np.clip(np.rint(array[0] * 255), 0, 255).astype(np.uint8))


@hookimpl
def register_preprocessors():
    """``preprocessor.plugin: edges`` selects :class:`EdgesPreprocessor`."""
    return {"edges": EdgesPreprocessor}


@hookimpl
def register_config_schemas():
    """The ``preprocessor`` node, when its plugin is ``edges``, is checked against EdgesConfig."""
    return {"preprocessor/edges": EdgesConfig}


@hookimpl
def config_searchpath():
    """Where Hydra finds ``preprocessor/edges.yaml``."""
    return "pkg://ailusion_example_plugin.conf"
