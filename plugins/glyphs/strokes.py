"""``strokes``: a pen-drawn font of the ten digits, in the forms people write them.

Fonts draw a digit the way type designers do: a "1" with a flag and a foot, a closed "4", a "7"
without a bar. People write an upright stroke for a "1", an open "4", a barred "7", a "9" with a
straight stem. Each digit here is one or more centre lines (polylines in a 0.6 × 1 box, y down)
drawn with a round pen, in several forms; ``generator.fonts: [strokes]`` adds one face per form
("Strokes 1" … "Strokes N"; face k draws form k of each digit, modulo the digit's number of
forms), and the glyphs generator then rotates, shears, stretches, distorts and fits them as it
does any font's glyphs. ``thickness`` widens or narrows the pen by twice its fraction of the
glyph's height, as a font's outline grows or shrinks by it on each side.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

#: The pen's width, as a fraction of the glyph's height, before ``thickness`` is added.
PEN = 0.2
#: The box a digit is drawn in: width and height in em units (x right, y down).
WIDTH, HEIGHT = 0.6, 1.0


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list:
    """Points of an elliptical arc from ``start`` to ``end`` degrees (counter-clockwise on the
    page when end > start; 0° is to the right, 90° up)."""
    n = max(4, int(abs(end - start) / 8))
    return [(cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, n + 1)]


def curve(*points) -> list:
    """Points of the quadratic (3 points) or cubic (4 points) Bézier curve through its ends."""
    p = np.array(points, dtype=float)
    t = np.linspace(0.0, 1.0, 17)[:, None]
    if len(p) == 3:
        q = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t ** 2 * p[2]
    else:
        q = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] \
            + t ** 3 * p[3]
    return [tuple(x) for x in q]


#: Each digit's forms; a form is a list of strokes, a stroke a list of (x, y) points.
FORMS: dict[str, list[list[list[tuple[float, float]]]]] = {
    "0": [
        [arc(0.3, 0.5, 0.28, 0.48, 90, 450)],
        [arc(0.3, 0.5, 0.2, 0.48, 100, 460)],
        [arc(0.3, 0.5, 0.28, 0.46, 60, 420) + [(0.42, 0.08)]],
    ],
    "1": [
        [[(0.08, 0.28), (0.34, 0.0), (0.34, 1.0)]],
        [[(0.06, 0.26), (0.32, 0.0), (0.32, 1.0)], [(0.06, 1.0), (0.56, 1.0)]],
        [[(0.0, 0.34), (0.42, 0.0), (0.26, 1.0)]],
        [[(0.3, 0.0), (0.3, 1.0)]],
    ],
    "2": [
        [arc(0.3, 0.27, 0.27, 0.26, 160, -30) + [(0.02, 1.0), (0.6, 1.0)]],
        [arc(0.3, 0.25, 0.26, 0.24, 170, -10) + curve((0.55, 0.35), (0.35, 0.65), (0.02, 1.0))
         + curve((0.02, 1.0), (0.2, 0.82), (0.3, 0.92), (0.6, 0.98))],
        [arc(0.3, 0.3, 0.28, 0.28, 150, -20) + curve((0.54, 0.4), (0.2, 0.75), (0.0, 1.0))
         + [(0.6, 0.96)]],
    ],
    "3": [
        [arc(0.28, 0.26, 0.25, 0.24, 150, -90) + arc(0.28, 0.74, 0.29, 0.26, 90, -150)],
        [[(0.04, 0.0), (0.56, 0.0), (0.22, 0.42)] + arc(0.28, 0.7, 0.29, 0.3, 110, -150)],
        [arc(0.3, 0.25, 0.25, 0.25, 160, -70) + [(0.15, 0.5)]
         + arc(0.3, 0.74, 0.28, 0.26, 110, -160)],
    ],
    "4": [
        [[(0.44, 1.0), (0.44, 0.0), (0.0, 0.68), (0.6, 0.68)]],
        [[(0.12, 0.0), (0.02, 0.62), (0.6, 0.62)], [(0.46, 0.22), (0.46, 1.0)]],
        [[(0.06, 0.0), (0.06, 0.58), (0.58, 0.58)], [(0.46, 0.0), (0.46, 1.0)]],
        [[(0.3, 0.0), (0.0, 0.62), (0.6, 0.62)], [(0.44, 0.3), (0.44, 1.0)]],
    ],
    "5": [
        [[(0.56, 0.0), (0.1, 0.0), (0.06, 0.46)] + arc(0.3, 0.7, 0.28, 0.29, 130, -150)],
        [[(0.1, 0.0), (0.06, 0.46)] + arc(0.3, 0.7, 0.28, 0.29, 130, -160),
         [(0.1, 0.0), (0.58, 0.02)]],
        [[(0.58, 0.02), (0.12, 0.04), (0.08, 0.42)] + curve((0.08, 0.42), (0.7, 0.3), (0.62, 0.9),
                                                            (0.02, 0.94))],
    ],
    "6": [
        [arc(0.34, 0.5, 0.26, 0.48, 60, 180) + arc(0.32, 0.72, 0.26, 0.27, 180, 540)],
        [curve((0.5, 0.0), (0.1, 0.3), (0.02, 0.7)) + arc(0.3, 0.74, 0.27, 0.25, 190, 530)],
        [[(0.48, 0.0), (0.08, 0.62)] + arc(0.3, 0.74, 0.26, 0.25, 160, 520)],
    ],
    "7": [
        [[(0.02, 0.0), (0.58, 0.0), (0.2, 1.0)]],
        [[(0.02, 0.0), (0.58, 0.0), (0.2, 1.0)], [(0.14, 0.5), (0.52, 0.5)]],
        [[(0.0, 0.06), (0.58, 0.02)] + curve((0.58, 0.02), (0.3, 0.4), (0.24, 1.0))],
        [[(0.02, 0.18), (0.02, 0.0), (0.58, 0.0), (0.3, 1.0)], [(0.16, 0.52), (0.56, 0.48)]],
    ],
    "8": [
        [arc(0.3, 0.25, 0.22, 0.24, 270, 630), arc(0.3, 0.73, 0.28, 0.27, 90, 450)],
        [arc(0.32, 0.23, 0.18, 0.22, 270, 630), arc(0.28, 0.72, 0.3, 0.28, 90, 450)],
        [arc(0.3, 0.25, 0.25, 0.25, 270, 630), arc(0.3, 0.74, 0.24, 0.26, 90, 450)],
    ],
    "9": [
        [arc(0.32, 0.24, 0.24, 0.22, 0, 360), curve((0.56, 0.24), (0.58, 0.7), (0.34, 1.0))],
        [arc(0.3, 0.26, 0.26, 0.25, -10, 350) + curve((0.56, 0.22), (0.6, 0.75), (0.12, 1.0))],
        [arc(0.3, 0.28, 0.27, 0.27, 0, 360), [(0.57, 0.28), (0.5, 1.0)]],
        [arc(0.32, 0.22, 0.22, 0.2, 0, 360), [(0.54, 0.22), (0.3, 1.0)]],
    ],
}
#: How many faces ``strokes`` adds: the largest number of forms of a digit.
FACES = max(len(forms) for forms in FORMS.values())


def covers(chars: str) -> bool:
    """Whether every character of ``chars`` is drawn by the stroke font."""
    return all(c in FORMS for c in chars)


def draw(text: str, face: int, size: int, stroke: int) -> Image.Image:
    """``text`` in form ``face`` (modulo each digit's forms) with its height ``size`` pixels, the
    pen ``2 * stroke`` pixels wider (``stroke`` may be negative: narrower; never under a pixel),
    white on black with a pad of at least 2 pixels."""
    pen = max(1.0, PEN * size + 2 * stroke)
    pad = 2 + pen / 2
    scale = size / HEIGHT
    gap = 0.2 * scale
    width = int(math.ceil(len(text) * WIDTH * scale + (len(text) - 1) * gap + 2 * pad))
    image = Image.new("L", (max(1, width), int(math.ceil(size + 2 * pad))), 0)
    canvas = ImageDraw.Draw(image)
    r = pen / 2
    for i, char in enumerate(text):
        if char.isspace():
            continue
        forms = FORMS[char]
        x0 = pad + i * (WIDTH * scale + gap)
        for line in forms[face % len(forms)]:
            points = [(x0 + x * scale, pad + y * scale) for x, y in line]
            canvas.line(points, fill=255, width=max(1, round(pen)), joint="curve")
            for x, y in (points[0], points[-1]):  # round ends
                canvas.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return image
