"""The options of the ``glyphs`` generator, checked from the config alone (no font opened).

Each augmentation is ``[low, high]`` (drawn uniformly per image from the image's seed) or a
number: as in torchvision's transforms, a number x means ``[-x, x]`` for the signed keys
(``SYMMETRIC``: rotation, shear, translation; x >= 0), and always x for the others. So a sweeper
can search one number per key (``generator.rotation=interval(0,30)``). ``LIMITS`` gives the
range every value must lie in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from ailusion.errors import ConfigError
from ailusion.options import is_int as _is_int, is_number as _is_number, with_defaults

#: Augmentation key → (lowest, highest) value allowed, and what it means (conf/generator/glyphs.yaml).
LIMITS = {
    "rotation": (-180.0, 180.0),    # degrees, counter-clockwise
    "shear": (-45.0, 45.0),         # degrees of horizontal slant
    "scale": (0.1, 4.0),            # size factor after fitting the glyph to the frame
    "aspect": (0.2, 5.0),           # width factor (1: the font's own proportions)
    "translation": (-0.5, 0.5),     # shift, as a fraction of the frame, in x and in y
    "thickness": (-0.1, 0.2),       # stroke added (> 0) or eroded (< 0), fraction of font size
    "elastic": (0.0, 0.3),          # elastic displacement, fraction of the glyph's size
    "blur": (0.0, 10.0),            # Gaussian blur radius, in output pixels
    "noise": (0.0, 1.0),            # Gaussian noise std, fraction of the full gray range
    "ink": (0.0, 255.0),            # gray level of the glyph
    "background": (0.0, 255.0),     # gray level of the frame
}
SYMMETRIC = ("rotation", "shear", "translation")
FITS = ("mass", "box", "stretch", "none")
#: Families whose letters and digits are pictures (their cmaps claim ASCII all the same).
PICTURE_FONTS = ("D050000L", "*Dingbat*", "*Symbol*", "*Emoji*", "Webdings", "Wingdings*")
DEFAULTS = {
    "seed": 0,
    "num_images_per_prompt": 1,
    "height": 28,
    "width": 28,
    "fonts": ["default", "system"],
    "exclude_fonts": list(PICTURE_FONTS),
    "supersample": 2,
    "fit": "box",
    "margin": 0.1,
    "elastic_grid": 4,
    **{key: 0.0 for key in LIMITS},
    "scale": 1.0,
    "aspect": 1.0,
    "ink": 255.0,
}



@dataclass
class GlyphsConfig:
    """The keys of ``conf/generator/glyphs.yaml`` and their types (an augmentation is a number or
    ``[low, high]``, checked by :func:`parse_range`)."""

    seed: int = 0
    num_images_per_prompt: int = 1
    height: int = 28
    width: int = 28
    fonts: List[str] = field(default_factory=lambda: ["default", "system"])
    exclude_fonts: List[str] = field(default_factory=lambda: list(PICTURE_FONTS))
    supersample: int = 2
    fit: str = "box"
    margin: float = 0.1
    elastic_grid: int = 4
    rotation: Any = 0.0
    shear: Any = 0.0
    scale: Any = 1.0
    aspect: Any = 1.0
    translation: Any = 0.0
    thickness: Any = 0.0
    elastic: Any = 0.0
    blur: Any = 0.0
    noise: Any = 0.0
    ink: Any = 255.0
    background: Any = 0.0


def _fail(key: str, message: str):
    raise ConfigError(f"generator.{key}", message)


def parse_range(key: str, value) -> tuple[float, float]:
    """``value`` (a number or ``[low, high]``) as ``(low, high)`` inside ``LIMITS[key]``."""
    lo, hi = LIMITS[key]
    if key in SYMMETRIC and _is_number(value):
        if value < 0:
            _fail(key, f"a single number x means [-x, x] and must be >= 0, got {value!r}")
        value = [-value, value]
    pair = value if isinstance(value, (list, tuple)) else [value, value]
    if not (len(pair) == 2 and all(_is_number(v) for v in pair)):
        _fail(key, f"must be a number or [low, high], got {value!r}")
    low, high = float(pair[0]), float(pair[1])
    if low > high:
        _fail(key, f"low must not exceed high, got [{pair[0]}, {pair[1]}]")
    if low < lo or high > hi:
        _fail(key, f"must lie in [{lo:g}, {hi:g}], got {value!r}")
    return low, high


def parse_options(config) -> dict:
    """Every option, validated: augmentations as ``(low, high)`` pairs, ``fonts`` as a list.
    Raises :class:`ConfigError` naming the first bad key."""
    options = with_defaults(config, DEFAULTS, "generator", "glyphs generator")
    for key, low in (("seed", 0), ("num_images_per_prompt", 1), ("height", 1), ("width", 1),
                     ("supersample", 1), ("elastic_grid", 2)):
        if not _is_int(options[key]) or options[key] < low:
            _fail(key, f"must be an integer >= {low}, got {options[key]!r}")
    if options["supersample"] > 16:
        _fail("supersample", f"must be at most 16, got {options['supersample']}")
    if options["elastic_grid"] > 16:
        _fail("elastic_grid", f"must be at most 16, got {options['elastic_grid']}")
    if options["fit"] not in FITS:
        _fail("fit", f"must be one of {', '.join(FITS)}, got {options['fit']!r}")
    margin = options["margin"]
    if not _is_number(margin) or not 0 <= margin < 0.5:
        _fail("margin", f"must be a number in [0, 0.5), got {margin!r}")
    fonts = options["fonts"]
    fonts = [fonts] if isinstance(fonts, str) else fonts
    if not isinstance(fonts, list) or not fonts or not all(
        isinstance(f, str) and f.strip() for f in fonts
    ):
        _fail("fonts", "must be a non-empty list of font names, files, globs, "
                       f"'default' or 'system', got {options['fonts']!r}")
    options["fonts"] = fonts
    exclude = options["exclude_fonts"]
    exclude = [exclude] if isinstance(exclude, str) else ([] if exclude is None else exclude)
    if not isinstance(exclude, list) or not all(isinstance(f, str) for f in exclude):
        _fail("exclude_fonts", f"must be a list of family names or globs, got {exclude!r}")
    options["exclude_fonts"] = exclude
    for key in LIMITS:
        options[key] = parse_range(key, options[key])
    return options
