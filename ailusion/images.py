"""Image files read as they were written: every mode Pillow opens becomes 8-bit RGB by scaling.

Pillow's ``convert("RGB")`` clips what does not fit in 8 bits: a 16-bit grayscale PNG comes out
almost all white. :func:`to_rgb` scales instead:

- 16-bit modes (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and ``I`` holding values in
  [0, 65535] (how Pillow opens 16-bit PNG and TIFF files): ``value / 257``, rounded;
- ``I`` holding values outside [0, 65535], and ``F``: values in [0, 1] (``F``) times 255, else the
  image's own range scaled to [0, 255] (NaN becomes 0);
- modes with transparency (``RGBA``, ``LA``, ``PA``, ``P`` or ``L`` or ``RGB`` with a
  transparency key, premultiplied ``RGBa``/``La``): composited over white, as dataset tools do;
- ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's own conversion.

:func:`open_image` reads a file with that conversion, upright by its EXIF orientation; any file
Pillow cannot decode, or refuses as a decompression bomb, is one :class:`ImageError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AilusionError

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
BACKGROUND = (255, 255, 255)  # under transparent pixels


class ImageError(AilusionError):
    """An image file that cannot be read (corrupt, truncated, unsupported, or too large)."""


def open_image(path: str | Path):
    """The file at ``path`` as an upright 8-bit RGB image (see the module docstring)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except Exception as exc:  # what a damaged or hostile file raises is not only OSError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, Image.DecompressionBombError):
            reason = f"refused as a possible decompression bomb ({reason})"
        raise ImageError(f"cannot read {path}: {reason}") from None


def to_rgb(image):
    """``image`` as 8-bit RGB, scaling (not clipping) deep modes and compositing transparency
    over white (see the module docstring)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode in ("RGBa", "La"):
        image = image.convert("RGBA")
    elif mode in ("LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = values.astype(np.float64)
    if mode in _SIXTEEN_BIT or (mode == "I" and values.size and 0 <= values.min()
                                and values.max() <= 65535):
        scaled = values / 257.0
    else:
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if mode == "F" and 0 <= low and high <= 1:
            low, high = 0.0, 1.0
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
