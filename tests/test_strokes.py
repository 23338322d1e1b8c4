"""The pen-drawn ``strokes`` font: its faces, its forms, the pen, and its images from their seeds."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from omegaconf import OmegaConf

from ailusion.errors import ConfigError
from ailusion.plugins.glyphs import GlyphGenerator
from ailusion.stages import Prompt

fonts = importlib.import_module("ailusion.plugins.glyphs.fonts")
strokes = importlib.import_module("ailusion.plugins.glyphs.strokes")
DIGITS = [str(d) for d in range(10)]


def test_strokes_adds_one_face_per_form_and_draws_only_digits():
    found = fonts.resolve_fonts(["strokes"], [], DIGITS)
    assert [f.name for f in found] == [f"Strokes {k}" for k in range(1, strokes.FACES + 1)]
    assert strokes.FACES == max(len(forms) for forms in strokes.FORMS.values()) >= 3
    assert all(f.is_strokes for f in found)
    with pytest.raises(ConfigError, match=r"^generator\.fonts: none of the \d+ fonts of "
                                          r"\['strokes'\] draws every character of 'A' "
                                          r"\(strokes draws the digits 0-9 only\)"):
        fonts.resolve_fonts(["strokes"], [], ["A"])
    mixed = fonts.resolve_fonts(["default", "strokes"], [], ["A7"])
    assert [f.name for f in mixed] == ["default"]  # a face that lacks a character is left out
    assert fonts.resolve_fonts(["default", "strokes"], ["Strokes"], DIGITS)[0].name == "default"
    assert len(fonts.resolve_fonts(["default", "strokes"], ["Strokes"], DIGITS)) == 1


@pytest.mark.parametrize("size", [16, 64])
def test_every_form_lies_inside_its_image_and_the_forms_differ(size):
    for digit, forms in strokes.FORMS.items():
        drawn = [np.asarray(strokes.draw(digit, k, size, 0)) for k in range(len(forms))]
        for k, ink in enumerate(drawn):
            assert ink.max() == 255, (digit, k)
            border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
            assert not border.any(), f"form {k} of {digit} touches the edge at {size} px"
            rows = np.nonzero(ink.any(axis=1))[0]
            assert rows[-1] - rows[0] + 1 >= 0.9 * size  # the digit's height is the size
        assert len({d.tobytes() for d in drawn}) == len(forms), digit
        # face k draws form k modulo the digit's number of forms
        again = np.asarray(strokes.draw(digit, len(forms), size, 0))
        assert np.array_equal(again, drawn[0])


def test_the_pen_follows_thickness_and_text_is_laid_out_left_to_right():
    base = np.asarray(strokes.draw("0", 0, 64, 0), dtype=float)
    wide = np.asarray(strokes.draw("0", 0, 64, 3), dtype=float)
    thin = np.asarray(strokes.draw("0", 0, 64, -3), dtype=float)
    assert wide.sum() > 1.3 * base.sum() and thin.sum() < 0.75 * base.sum()
    assert np.asarray(strokes.draw("0", 0, 64, -100)).any()  # never thinner than a pixel
    one, ten = np.asarray(strokes.draw("1", 0, 64, 0)), np.asarray(strokes.draw("10", 0, 64, 0))
    assert ten.shape[0] == one.shape[0] and ten.shape[1] > 1.8 * one.shape[1]
    columns = np.nonzero(ten.any(axis=0))[0]
    assert np.diff(columns).max() > 1  # a gap between the two digits


def glyphs(**options):
    return GlyphGenerator(OmegaConf.create({"plugin": "glyphs", "fonts": ["strokes"], **options}),
                          None)


def test_strokes_images_come_from_their_seeds_with_every_augmentation():
    options = dict(height=8, width=8, supersample=4, fit="stretch", margin=0.0, rotation=10,
                   shear=15, aspect=[0.6, 1.0], thickness=[-0.03, 0.05], elastic=[0, 0.2],
                   blur=[0, 0.3], noise=[0, 0.03], num_images_per_prompt=3)
    gen = glyphs(**options)
    requests = gen.plan([Prompt(d) for d in DIGITS])
    batch = [g for g in gen.generate(requests)]
    alone = [next(iter(glyphs(**options).generate([r]))) for r in reversed(requests)][::-1]
    for a, b in zip(batch, alone):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        assert a.info["glyph"] == b.info["glyph"]
    assert {g.info["glyph"]["font"] for g in batch} <= {f"Strokes {k}" for k in range(1, 5)}
    assert len({g.info["glyph"]["font"] for g in batch}) > 1
    assert len({np.asarray(g.image).tobytes() for g in batch}) == len(batch)


def test_thicker_pen_more_ink_through_the_generator():
    def ink(thickness):
        gen = glyphs(height=32, width=32, thickness=thickness, num_images_per_prompt=4)
        requests = gen.plan([Prompt("8")])
        return sum(np.asarray(g.image, dtype=float).sum() for g in gen.generate(requests))

    assert ink(0.05) > 1.15 * ink(0.0) > 1.15 * ink(-0.03)  # the fit shrinks wider glyphs a little
