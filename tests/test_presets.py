"""preprocessor=clip and preprocessor=imagenet equal their reference processors on any aspect ratio.

The references are transformers' image processors: ``CLIPImageProcessor`` itself for clip; for
imagenet, torchvision's standard evaluation transform (``Resize(256)``, ``CenterCrop(224)``,
``ToTensor()``, ``Normalize(mean, std)``). torchvision cannot be installed next to the CPU torch
here, so that transform is rebuilt from transformers' ``BitImageProcessor`` configured to the same
steps (shorter side to 256, bilinear, rescale, ImageNet mean/std), with torchvision's crop offset,
``int(round((side - 224) / 2.0))``, applied to its uncropped output (cropping commutes with the
per-pixel steps that follow it). Where that offset equals transformers' ``(side - 224) // 2`` the
fully configured ``BitImageProcessor`` (with its own crop) must match as well.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ailusion.api import compose_config
from ailusion.plugins.image import ImagePreprocessor

SIZES = [(640, 480), (480, 640), (333, 517), (517, 333), (224, 224), (256, 256), (300, 300),
         (1000, 225), (225, 1000), (97, 1203), (343, 256), (256, 343), (301, 402), (113, 150)]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed + width * 7919 + height).integers(0, 256, (height, width, 3))
    return Image.fromarray(pixels.astype(np.uint8))


def preset(name: str) -> ImagePreprocessor:
    return ImagePreprocessor(compose_config([f"preprocessor={name}"]).preprocessor)


@pytest.fixture(scope="module")
def clip_reference():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor()  # openai/clip-vit-*'s: shortest edge 224 bicubic, crop 224


@pytest.mark.parametrize("width, height", SIZES)
def test_clip_preset_equals_clip_image_processor(clip_reference, width, height):
    image = noise(width, height)
    ours = preset("clip").preprocess([image])
    reference = clip_reference(images=[image], return_tensors="np")["pixel_values"]
    assert ours.shape == reference.shape == (1, 3, 224, 224)
    assert np.abs(ours - reference).max() <= 1e-6


def bit(**changes):
    from transformers import BitImageProcessor
    from transformers.image_utils import (
        IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling,
    )

    settings = dict(do_resize=True, size={"shortest_edge": 256},
                    resample=PILImageResampling.BILINEAR, do_center_crop=True,
                    crop_size={"height": 224, "width": 224}, do_rescale=True,
                    rescale_factor=1 / 255, do_normalize=True, image_mean=IMAGENET_DEFAULT_MEAN,
                    image_std=IMAGENET_DEFAULT_STD, do_convert_rgb=True)
    return BitImageProcessor(**{**settings, **changes})


def torchvision_eval_transform(image: Image.Image) -> np.ndarray:
    """Resize(256) → CenterCrop(224) → ToTensor → Normalize, as torchvision computes them."""
    full = bit(do_center_crop=False)(images=[image], return_tensors="np")["pixel_values"][0]
    _, h, w = full.shape
    top, left = int(round((h - 224) / 2.0)), int(round((w - 224) / 2.0))
    return full[None, :, top:top + 224, left:left + 224]


@pytest.mark.parametrize("width, height", SIZES)
def test_imagenet_preset_equals_torchvisions_evaluation_transform(width, height):
    image = noise(width, height)
    ours = preset("imagenet").preprocess([image])
    reference = torchvision_eval_transform(image)
    assert ours.shape == reference.shape == (1, 3, 224, 224)
    assert np.abs(ours - reference).max() <= 1e-6
    resized = bit(do_center_crop=False)(images=[image], return_tensors="np")["pixel_values"]
    excess = [side - 224 for side in resized.shape[2:]]
    if all(e // 2 == int(round(e / 2.0)) for e in excess):  # both libraries crop alike
        cropped = bit()(images=[image], return_tensors="np")["pixel_values"]
        assert np.abs(ours - cropped).max() <= 1e-6


def test_the_torchvision_crop_offset_is_the_one_that_differs_from_transformers():
    """343 × 256 resizes to 343 × 256: torchvision starts the crop at round(59.5) = 60,
    transformers at 59; the preset follows torchvision."""
    image = noise(343, 256)
    ours = preset("imagenet").preprocess([image])
    resized = bit(do_center_crop=False)(images=[image], return_tensors="np")["pixel_values"]
    assert np.abs(ours - resized[..., 16:240, 60:284]).max() <= 1e-6
    assert np.abs(ours - resized[..., 16:240, 59:283]).max() > 1e-3


def test_center_crop_mode_is_not_the_clip_preset():
    """The old way (normalize=clip with mode=center_crop) crops before it resizes: it differs."""
    image = noise(640, 480)
    old = ImagePreprocessor({"mode": "center_crop", "normalize": "clip"}).preprocess([image])
    assert np.abs(old - preset("clip").preprocess([image])).max() > 0.05


def test_resize_must_cover_the_crop():
    from ailusion.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^preprocessor\.resize: must be null or at least"):
        ImagePreprocessor({"mode": "resize_crop", "size": [224, 300], "resize": 256})
    wide = ImagePreprocessor({"mode": "resize_crop", "size": [224, 300]})
    assert wide.preprocess([noise(333, 517)]).shape == (1, 3, 224, 300)
