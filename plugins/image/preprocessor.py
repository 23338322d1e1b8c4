"""Preprocessor ``image``: resize, scale to [0, 1], normalize, optionally grayscale.

With the defaults every image becomes ``np.asarray(img.resize((224, 224), Image.BICUBIC),
dtype=np.float32) / 255``, bit for bit. A batch is spread over a thread pool: Pillow releases the
GIL while it converts and resizes and numpy while it scales, so every core works on its own image
and writes straight into its row of the preallocated output.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from PIL import Image

from ailusion.images import to_rgb
from ailusion.threads import cores

from .options import parse_options


class ImagePreprocessor:
    """Images (in memory, or paths to image files) → a (N, C, H, W) array; see
    ``conf/preprocessor/image.yaml`` for the options."""

    def __init__(self, config, context=None):
        options = parse_options(config)
        self.options = options
        self.height, self.width = options["size"]
        self.grayscale = options["grayscale"]
        channels = options["grayscale_channels"] if self.grayscale else 3
        self.output_shape = (channels, self.height, self.width)
        self.dtype = np.dtype(options["dtype"])
        self._filter = Image.Resampling[options["interpolation"].upper()]
        self._mean = _column(options["mean"])
        self._std = _column(options["std"])
        self._pad = self._pad_values(options["pad_color"])
        workers = options["num_workers"] or cores()
        self._pool = ThreadPoolExecutor(workers, "ailusion-preprocess") if workers > 1 else None

    def settings(self) -> dict:
        """Everything that shapes the output, for the manifest."""
        unused = {"num_workers"}
        if self.options["mode"] != "resize_crop":  # its own keys shape nothing in other modes
            unused |= {"resize", "crop_offset"}
        return {k: v for k, v in self.options.items() if k not in unused}

    def preprocess(self, images: Sequence) -> np.ndarray:
        """Return the (N, C, H, W) array for ``images``, one image per worker thread."""
        out = np.empty((len(images), *self.output_shape), dtype=self.dtype)
        if self._pool is None or len(images) < 2:
            for row, image in zip(out, images):
                self._fill(row, image)
        else:
            for _ in self._pool.map(self._fill, out, images):
                pass  # re-raises a worker's error
        return out

    def to_image(self, array: np.ndarray) -> Image.Image:
        """Map one (C, H, W) output back to an 8-bit image, undoing ``mean``/``std``."""
        values = np.asarray(array, dtype=np.float32)
        if self._mean is not None:
            values = values * self._std + self._mean
        # In place, and the bands merged by Pillow: a third of the time of a transposed copy.
        values = np.multiply(values, 255, dtype=np.float32)
        np.rint(values, out=values)
        np.clip(values, 0, 255, out=values)
        pixels = values.astype(np.uint8)
        if len(pixels) == 1:
            return Image.fromarray(pixels[0])
        if len(pixels) == 3:
            return Image.merge("RGB", [Image.fromarray(band) for band in pixels])
        return Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))

    def _fill(self, row: np.ndarray, image) -> None:
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as opened:  # decoded here, on the worker thread
                return self._fill(row, opened)
        mode = "L" if self.grayscale else "RGB"
        if image.mode not in ("RGB", "L"):
            image = to_rgb(image)  # 16-bit, float, transparent, CMYK…: scaled, not clipped
        if image.mode != mode:
            image = image.convert(mode)
        (width, height), box, (x, y) = self._geometry(*image.size)
        resized = image.resize(
            (width, height), self._filter, box=box, reducing_gap=self.options["reducing_gap"]
        )
        if self.options["mode"] == "resize_crop":  # then cut the centre out, pixels as they are
            (width, height), resized = (self.width, self.height), resized.crop(
                (x, y, x + self.width, y + self.height))
            x = y = 0
        pixels = np.asarray(resized)
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        # Scale in float32 (then cast once) so float16 rows equal the float32 ones, rounded.
        work = row if self.dtype == np.float32 else np.empty(row.shape, np.float32)
        if (width, height) != (self.width, self.height):
            work[...] = self._pad
        region = work[:, y : y + height, x : x + width]
        self._scale(pixels, region)
        if work is not row:
            row[...] = work

    def _scale(self, pixels: np.ndarray, out: np.ndarray) -> None:
        # x / 255 as float32 division (not a multiply by 1/255) is what makes the defaults exact.
        np.divide(pixels, np.float32(255), out=out[: len(pixels)])
        out[len(pixels) :] = out[:1]  # gray replicated to grayscale_channels
        if self._mean is not None:
            np.subtract(out, self._mean, out=out)
            np.divide(out, self._std, out=out)

    def _pad_values(self, color) -> np.ndarray:
        rgb = (color,) * 3 if isinstance(color, int) else tuple(color)
        if self.grayscale:  # the pad's luma, as Pillow's "L" conversion computes it
            rgb = (Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0)),)
        pad = np.empty((self.output_shape[0], 1, 1), np.float32)
        self._scale(np.array(rgb, np.uint8).reshape(-1, 1, 1), pad)
        return pad

    def _geometry(self, width: int, height: int):
        """(resized size, source box, offset in the output), as ``ImageOps.fit`` (center_crop) and
        ``ImageOps.pad`` (letterbox) compute them; their arithmetic is mirrored so that
        ``reducing_gap`` applies and the pixels land straight in the output row."""
        mode, ratio, target = self.options["mode"], width / height, self.width / self.height
        if mode == "resize_crop":
            return self._resize_crop(width, height)
        if mode == "stretch" or ratio == target:
            return (self.width, self.height), None, (0, 0)
        if mode == "center_crop":
            crop = (target * height, height) if ratio > target else (width, width / target)
            left, top = (width - crop[0]) * 0.5, (height - crop[1]) * 0.5
            return (self.width, self.height), (left, top, left + crop[0], top + crop[1]), (0, 0)
        if ratio > target:
            size = (self.width, max(1, round(height / width * self.width)))
        else:
            size = (max(1, round(width / height * self.height)), self.height)
        offset = (round((self.width - size[0]) * 0.5), round((self.height - size[1]) * 0.5))
        return size, None, offset

    def _resize_crop(self, width: int, height: int):
        """The shorter side scaled to ``resize`` (the longer one truncated to an int, as
        torchvision's ``Resize(int)`` and transformers' ``shortest_edge`` compute it), and where
        the centre crop starts in that: ``excess // 2`` (transformers) or
        ``round(excess / 2)`` (torchvision's ``CenterCrop``), per ``crop_offset``."""
        short = self.options["resize"] or max(self.width, self.height)
        if width <= height:
            size = (short, int(short * height / width))
        else:
            size = (int(short * width / height), short)
        excess = (size[0] - self.width, size[1] - self.height)
        if self.options["crop_offset"] == "round":
            offset = tuple(int(round(e / 2.0)) for e in excess)
        else:
            offset = tuple(e // 2 for e in excess)
        return size, None, offset


def _column(values) -> np.ndarray | None:
    return None if values is None else np.array(values, np.float32).reshape(-1, 1, 1)
