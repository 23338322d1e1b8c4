"""The options of the ``image`` preprocessor, checked from the config alone (no image needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from ailusion.errors import ConfigError
from ailusion.options import is_int as _is_int, is_number as _is_number
from ailusion.schemas import check_node

MODES = ("stretch", "center_crop", "letterbox", "resize_crop")
CROP_OFFSETS = ("floor", "round")
INTERPOLATIONS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
DTYPES = ("float32", "float16")
#: (mean, std) per RGB channel, as torchvision's ImageNet models and OpenAI's CLIP were trained.
PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


@dataclass
class ImageConfig:
    """The keys of ``conf/preprocessor/image.yaml`` (which documents each) and their types."""

    size: Any = 224  # an int or [height, width]
    mode: str = "stretch"
    interpolation: str = "bicubic"
    pad_color: Any = 0  # a gray level or [r, g, b]
    resize: Optional[int] = None
    crop_offset: str = "floor"
    reducing_gap: Optional[float] = None
    normalize: Optional[str] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    dtype: str = "float32"
    grayscale: bool = False
    grayscale_channels: int = 1
    num_workers: Optional[int] = None



def parse_options(config) -> dict:
    """Every option, validated and normalized (``size`` as ``[height, width]``, ``mean``/``std``
    filled from a preset); raises :class:`ConfigError` naming the first bad key."""
    options = dict(check_node(ImageConfig, config, "preprocessor", "the image preprocessor"))
    options.pop("plugin", None)
    options = {key: _plain(value) for key, value in options.items()}

    size = options["size"]
    sizes = size if isinstance(size, list) else [size, size]
    if len(sizes) != 2 or not all(_is_int(s) and s > 0 for s in sizes):
        _fail("size", f"must be a positive int or [height, width] of positive ints, got {size}")
    options["size"] = sizes

    for key, allowed in (("mode", MODES), ("interpolation", INTERPOLATIONS), ("dtype", DTYPES),
                         ("crop_offset", CROP_OFFSETS)):
        if options[key] not in allowed:
            _fail(key, f"must be one of {', '.join(allowed)}, got {options[key]!r}")
    if not isinstance(options["grayscale"], bool):
        _fail("grayscale", f"must be true or false, got {options['grayscale']!r}")
    channels = options["grayscale_channels"]
    if not (_is_int(channels) and channels in (1, 3)):
        _fail("grayscale_channels", f"must be 1 or 3, got {channels!r}")
    pad = options["pad_color"]
    if not (_is_int(pad) and 0 <= pad <= 255) and not (
        isinstance(pad, list) and len(pad) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in pad)
    ):
        _fail("pad_color", f"must be a gray level 0-255 or [r, g, b] of 0-255, got {pad}")
    resize = options["resize"]
    if resize is not None and not (resize >= max(sizes)):
        _fail("resize", f"must be null or at least the larger side of size ({max(sizes)}) so the "
                        f"crop is covered, got {resize}")
    gap = options["reducing_gap"]
    if gap is not None and not (_is_number(gap) and gap >= 1):
        _fail("reducing_gap", f"must be null or a number >= 1, got {gap!r}")
    workers = options["num_workers"]
    if workers is not None and not (_is_int(workers) and workers > 0):
        _fail("num_workers", f"must be null (every core) or a positive int, got {workers!r}")

    channels = options["grayscale_channels"] if options["grayscale"] else 3
    _parse_normalization(options, channels)
    return options


def _parse_normalization(options: dict, channels: int) -> None:
    preset, mean, std = options["normalize"], options["mean"], options["std"]
    if preset is not None:
        if preset not in PRESETS:
            _fail("normalize", f"must be one of {', '.join(PRESETS)} or null, got {preset!r}")
        if mean is not None or std is not None:
            _fail("normalize", "give a preset or mean and std, not both")
        if channels != 3:
            _fail("normalize", f"preset {preset!r} is for 3 channels, the output has {channels} "
                  "(grayscale_channels=3 gives three)")
        options["mean"], options["std"] = (list(values) for values in PRESETS[preset])
        return
    if (mean is None) != (std is None):
        _fail("std" if std is None else "mean", "mean and std must be given together")
    for key, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            _fail(key, f"must be a list of numbers, one per channel, got {values!r}")
        if len(values) != channels:
            _fail(key, f"must have one value per output channel ({channels}), got {len(values)}")
    if std is not None and not all(v > 0 for v in std):
        _fail("std", f"every value must be positive (it divides), got {std}")
    if mean is not None:
        options["mean"], options["std"] = [float(v) for v in mean], [float(v) for v in std]


def _plain(value):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _fail(key: str, message: str):
    raise ConfigError(f"preprocessor.{key}", message)
