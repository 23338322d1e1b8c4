"""Preprocessor ``image``: resize, scale to [0, 1], optionally grayscale."""

from __future__ import annotations

from typing import Sequence

from ailusion import hookimpl
from ailusion.errors import ConfigError


class ImagePreprocessor:
    """Bicubic resize to ``size``×``size`` and float32 in [0, 1], as (N, C, H, W)."""

    def __init__(self, config, context):
        if int(config.size) <= 0:
            raise ConfigError("preprocessor.size", f"must be positive, got {config.size}")
        self.size = int(config.size)
        self.grayscale = bool(config.grayscale)
        self.output_shape = (1 if self.grayscale else 3, self.size, self.size)

    def settings(self) -> dict:
        return {"size": self.size, "grayscale": self.grayscale}

    def preprocess(self, images: Sequence):
        import numpy as np
        from PIL import Image

        out = np.empty((len(images), *self.output_shape), dtype=np.float32)
        for i, image in enumerate(images):
            image = image.convert("L") if self.grayscale else image.convert("RGB")
            array = np.asarray(image.resize((self.size, self.size), Image.BICUBIC), np.float32) / 255
            out[i] = array[None] if self.grayscale else array.transpose(2, 0, 1)
        return out

    def to_image(self, array):
        import numpy as np
        from PIL import Image

        pixels = np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))


@hookimpl(trylast=True)
def register_preprocessors():
    return {"image": ImagePreprocessor}
