"""Drawing one glyph image from its text and seed, with every augmentation drawn from the seed.

The steps, all at ``supersample`` times the frame's resolution until the last:
font and stroke thickness → affine (rotation, shear, aspect) → elastic distortion (a smooth
random mesh) → fit to the frame (scaled into the box inside ``margin``, centred by bounding box
or centre of mass, as digit datasets are normalised) → scale and translation → area-averaged
down to the frame (as UCI's optdigits counts pixels per block) → blur → ink and background
levels → noise.

Every value is drawn from ``numpy.random.default_rng(seed)`` in a fixed order, whatever keys are
constant, so an image depends only on its text, its seed and the options, never on the batch,
the shard or the images made before it.
"""

from __future__ import annotations

import functools
import math

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import strokes
from .fonts import Font

#: The keys drawn per image, in the order they are drawn (the manifest records each).
DRAWN = ("rotation", "shear", "aspect", "scale", "translation_x", "translation_y", "thickness",
         "elastic", "blur", "noise", "ink", "background")


def draw_params(rng, options: dict, num_fonts: int) -> tuple[int, dict[str, float]]:
    """(font number, the drawn values), the first draws of the image's ``rng``."""
    font = int(rng.integers(num_fonts))
    u = rng.random(len(DRAWN)).tolist()
    values = {}
    for key, x in zip(DRAWN, u):
        low, high = options[key.split("_")[0]]  # translation_x, translation_y: translation
        values[key] = low + (high - low) * x
    return font, values


def render(text: str, seed: int, options: dict, fonts: list[Font]) -> tuple[Image.Image, dict]:
    """The (grayscale) image of ``text`` for ``seed``, and what was drawn for it."""
    rng = np.random.default_rng(seed)
    font_number, v = draw_params(rng, options, len(fonts))
    ss = options["supersample"]
    fw, fh = options["width"] * ss, options["height"] * ss
    font_size = max(16, options["height"] * ss)
    glyph = _text(text, fonts[font_number], font_size, v["thickness"])
    shift = rng.standard_normal((2, options["elastic_grid"] + 1, options["elastic_grid"] + 1))
    frame = _place(glyph, options, v, font_size, (fw, fh), shift)
    if ss > 1:
        frame = frame.reduce(ss)
    image = _finish(frame, v, rng)
    return image, {"font": fonts[font_number].name, **{k: round(x, 4) for k, x in v.items()}}


@dataclass(frozen=True)
class Glyph:
    """A text's ink, cropped to its bounding box, and its ink pixels (centres) and weights."""

    image: Image.Image
    ink: np.ndarray  # float32 (h, w)
    points: np.ndarray  # (2, n): x and y of each inked pixel's centre
    weights: np.ndarray  # (n,)


def _text(text: str, font: Font, size: int, thickness: float) -> Glyph:
    """The text drawn at ``size`` with the stroke ``thickness`` gives (a whole number of pixels,
    so the same few glyphs recur and are drawn once)."""
    return _draw(text, font, size, max(0, round(thickness * size)), max(0, round(-thickness * size)))


@functools.lru_cache(maxsize=16384)
def _draw(text: str, font: Font, size: int, stroke: int, erode: int) -> Glyph:
    if font.is_strokes:  # the pen itself widens or narrows
        image = strokes.draw(text, font.index, size, stroke - erode)
    else:
        image = _text_image(text, font, size, stroke, erode)
    box = image.getbbox()
    image = image.crop(box) if box else image.crop((0, 0, 0, 0))
    ink = np.asarray(image, dtype=np.float32)
    ys, xs = np.nonzero(ink)
    return Glyph(image, ink, np.stack([xs + 0.5, ys + 0.5]), ink[ys, xs])


def _text_image(text: str, font: Font, size: int, stroke: int, erode: int) -> Image.Image:
    """``text`` drawn with a font's outline grown by ``stroke`` or eroded by ``erode`` pixels."""
    face = font.load(size)
    left, top, right, bottom = face.getbbox(text, stroke_width=stroke)
    pad = 2
    image = Image.new("L", (max(1, right - left + 2 * pad), max(1, bottom - top + 2 * pad)), 0)
    ImageDraw.Draw(image).text(
        (pad - left, pad - top), text, fill=255, font=face, stroke_width=stroke, stroke_fill=255
    )
    if erode > 0:  # thinner strokes: erode by a (2r+1)² window
        image = image.filter(ImageFilter.MinFilter(2 * erode + 1))
    return image


def _linear(rotation: float, shear: float, aspect: float) -> np.ndarray:
    """The 2×2 map (x right, y down) of aspect, then shear, then rotation."""
    a, t = math.radians(rotation), math.tan(math.radians(shear))
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s], [-s, c]]) @ np.array([[1.0, -t], [0.0, 1.0]]) @ np.diag([aspect, 1.0])


def _place(glyph, options, v, font_size, frame_size, shift) -> Image.Image:
    """The glyph transformed and fitted into the (supersampled) frame, in one resampling: each
    frame pixel reads the glyph at ``m⁻¹ (q + elastic(q) - centre - t) / k + glyph_centre``."""
    fw, fh = frame_size
    gw, gh = glyph.image.size
    if not glyph.weights.size:  # nothing drawn (a space)
        return Image.new("L", frame_size, 0)
    stretch = options["fit"] == "stretch"  # aspect comes after filling the box, not before
    m = _linear(v["rotation"], v["shear"], 1.0 if stretch else v["aspect"])
    points = m @ glyph.points  # ink pixel centres, transformed
    low, high = points.min(axis=1) - 0.5, points.max(axis=1) + 0.5  # ± half a pixel
    if options["fit"] == "mass":
        centre = points @ glyph.weights / glyph.weights.sum()
    else:
        centre = (low + high) / 2
    inner = np.array([fw, fh]) * (1 - 2 * options["margin"])
    if options["fit"] == "none":  # the font's own size: its em fills the inner box's height
        k = np.full(2, inner[1] / font_size)
    elif stretch:  # width and height each fill the box, then the aspect narrows or widens it
        k = inner / np.maximum(high - low, 1e-6) * np.array([v["aspect"], 1.0])
    else:
        k = np.full(2, float(min(inner / np.maximum(high - low, 1e-6))))
    k = k * v["scale"]
    target = np.array([fw / 2 + v["translation_x"] * fw, fh / 2 + v["translation_y"] * fh])
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    m_inv = np.array([[m[1, 1], -m[0, 1]], [-m[1, 0], m[0, 0]]]) / det
    inv = m_inv / k[None, :]  # m⁻¹ · diag(1/kx, 1/ky)
    centre = m_inv @ centre  # in the glyph's own coordinates
    if v["elastic"] <= 0:
        # source = inv · (q - target) + centre
        offset = centre - inv @ target
        data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
        return glyph.image.transform(frame_size, Image.Transform.AFFINE, data,
                               Image.Resampling.BILINEAR)
    return _elastic(glyph.ink, inv, target, centre, v["elastic"] * float(k.max()) * max(gw, gh),
                    shift, frame_size)


def _elastic(ink, inv, target, centre, amplitude, shift, frame_size) -> Image.Image:
    """Resample with a smooth random displacement: the ``shift`` grid (standard normal, clipped
    to ±2) times ``amplitude`` / 2 frame pixels, interpolated bilinearly over the frame. The
    source coordinates are affine in (q + field), so the field's share is mixed on the grid."""
    from scipy.ndimage import map_coordinates

    fw, fh = frame_size
    grid = np.clip(shift, -2, 2) * (amplitude / 2)
    qx = np.arange(fw) + 0.5 - target[0]
    qy = np.arange(fh) + 0.5 - target[1]
    wy, wx = _weights(fh, grid.shape[1]), _weights(fw, grid.shape[2])
    sx = inv[0, 0] * qx[None, :] + (inv[0, 1] * qy + centre[0] - 0.5)[:, None]
    sy = inv[1, 0] * qx[None, :] + (inv[1, 1] * qy + centre[1] - 0.5)[:, None]
    sx += wy @ (inv[0, 0] * grid[0] + inv[0, 1] * grid[1]) @ wx.T
    sy += wy @ (inv[1, 0] * grid[0] + inv[1, 1] * grid[1]) @ wx.T
    out = map_coordinates(ink, [sy, sx], order=1, mode="constant", cval=0.0, prefilter=False)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def _upsample(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (g+1, g+1) grid of values spread bilinearly over a (height, width) array."""
    return _weights(height, len(grid)) @ grid @ _weights(width, len(grid)).T


@functools.lru_cache(maxsize=64)
def _weights(size: int, points: int) -> np.ndarray:
    """(size, points) bilinear interpolation weights from ``points`` evenly spread nodes."""
    position = (np.arange(size) + 0.5) / size * (points - 1)
    left = np.minimum(position.astype(int), points - 2)
    frac = position - left
    w = np.zeros((size, points))
    w[np.arange(size), left] = 1 - frac
    w[np.arange(size), left + 1] = frac
    return w


def _finish(frame: Image.Image, v: dict, rng) -> Image.Image:
    """Ink and background levels, blur, then noise (drawn from ``rng`` in a fixed order)."""
    if v["blur"] > 0:
        frame = frame.filter(ImageFilter.GaussianBlur(v["blur"]))
    noise = rng.standard_normal((frame.height, frame.width), dtype=np.float32)
    ink, background = v["ink"], v["background"]
    if ink == 255 and background == 0 and v["noise"] == 0:
        return frame
    x = np.asarray(frame, dtype=np.float32) * ((ink - background) / 255.0) + background
    if v["noise"] > 0:
        x += noise * (v["noise"] * 255.0)
    return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "L")
