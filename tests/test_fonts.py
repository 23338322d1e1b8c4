"""Contact-sheet text: normal word spacing, a font that has the prompt's script where the machine
has one, and a visible ``?`` (with a warning) for characters no installed font has."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from ailusion import fonts
from ailusion.rundir.sheets import _CELL_H, _HEADER, _LINE, _PAD, THUMB, ContactSheets

NOBODY = "\U000f0001"  # supplementary private use: in no font


def sheet_text_line(tmp_path, prompt: str) -> np.ndarray:
    """The prompt line of the only cell of a contact sheet, as a boolean ink mask."""
    saved = {}
    sheets = ContactSheets(tmp_path, 1, lambda path, data: saved.update({path.name: data}))
    sheets.add({"index": 1, "prompt": prompt}, None, None)
    sheets.close()
    sheet = np.asarray(Image.open(io.BytesIO(saved["contact_sheet.png"])).convert("L"))
    top = _HEADER + THUMB + 2 * _PAD + _LINE
    line = sheet[top:top + _LINE, _PAD:]
    assert line.shape[0] == _LINE and _HEADER + _CELL_H <= sheet.shape[0]
    return line < 200


def widest_gap(ink: np.ndarray) -> int:
    """The widest run of blank columns between the first and the last inked one."""
    columns = np.flatnonzero(ink.any(axis=0))
    return int(np.diff(columns).max()) - 1 if len(columns) > 1 else 0


def test_words_on_a_sheet_are_spaced_as_in_normal_text(tmp_path):
    spaced = widest_gap(sheet_text_line(tmp_path, "sunset over"))
    joined = widest_gap(sheet_text_line(tmp_path, "sunsetover"))
    assert spaced >= 3 and spaced >= joined + 2, (spaced, joined)


def test_the_font_has_normal_word_spacing():
    font = fonts.primary()
    space = font.getlength("sunset over") - font.getlength("sunsetover")
    assert space >= fonts.SIZE / 4, f"a space is {space} px at size {fonts.SIZE}"


def test_latin_accents_are_drawn_not_boxed():
    font, text = fonts.font_for("café crème")
    assert text == "café crème"
    assert all(fonts.has_glyph(font, c) for c in "éè")


def test_has_glyph_tells_a_drawn_character_from_the_missing_box():
    font = fonts.primary()
    assert fonts.has_glyph(font, "A") and not fonts.has_glyph(font, NOBODY)


def test_a_script_the_main_font_lacks_is_drawn_with_an_installed_font_that_has_it():
    for text in ("नमस्ते", "ሰላም", "猫と犬", "고양이", "ภาษาไทย"):
        if not all(fonts.has_glyph(fonts.primary(), c) for c in text if not c.isspace()):
            break
    else:
        pytest.skip("the main font has every script tried")
    font, drawn = fonts.font_for(text)
    if drawn != text:
        pytest.skip(f"no font on this machine has {text!r}")
    assert font is not fonts.primary()
    assert all(fonts.has_glyph(font, c) for c in text)


def test_a_character_no_font_has_is_a_question_mark_with_one_warning(tmp_path, caplog):
    fonts._font_for.cache_clear()
    with caplog.at_level(logging.WARNING, logger="ailusion.fonts"):
        font, drawn = fonts.font_for(f"a {NOBODY} cat")
        assert fonts.font_for(f"the {NOBODY} dog")[1] == "the ? dog"
    assert drawn == "a ? cat"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "U+F0001" in warnings[0]
    # On the sheet the character is the question mark, not a box.
    assert (sheet_text_line(tmp_path, f"a {NOBODY} cat") == sheet_text_line(tmp_path, "a ? cat")).all()
