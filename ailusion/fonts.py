"""Fonts for the text of contact sheets: one that shows the text's script where the machine has it.

The sheet's font is the system's sans-serif (``fc-match sans-serif``, else DejaVu Sans, else
Pillow's own), at a size with normal word spacing. Text with characters that font lacks (``café``
is fine in most; ``猫`` or ``قطة`` often is not) is drawn with an installed font that has them all,
found with fontconfig (``fc-list :charset=…``). Characters no installed font has are drawn as
``?``, with one warning naming them, rather than as empty boxes.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

SIZE = 11  # pixels: a 12-pixel line, with a space about a third of the height wide
MISSING = "?"
_PROBE = "\U0010fffd"  # a private-use code point no font draws: renders as the font's .notdef


@functools.lru_cache(maxsize=None)
def primary():
    """The sheet's font: the system sans-serif, DejaVu Sans, or Pillow's built-in one."""
    from PIL import ImageFont

    for path in (_fc(["fc-match", "--format=%{file}", "sans-serif"]), "DejaVuSans.ttf"):
        if path:
            try:
                return ImageFont.truetype(path.splitlines()[0], SIZE)
            except OSError:
                continue
    return ImageFont.load_default(SIZE)


def font_for(text: str):
    """``(font, text)``: a font that draws every character of ``text``, and ``text`` with any
    character no installed font draws replaced by ``?``."""
    needed = frozenset(c for c in text if ord(c) > 127 and not c.isspace())
    if not needed:
        return primary(), text
    font, missing = _font_for(needed)
    return font, "".join(MISSING if c in missing else c for c in text) if missing else text


@functools.lru_cache(maxsize=256)
def _font_for(needed: frozenset):
    font = primary()
    lacking = {c for c in needed if not has_glyph(font, c)}
    if not lacking:
        return font, frozenset()
    for path in _candidates(lacking):
        try:
            candidate = _truetype(path)
        except OSError:
            continue
        if all(has_glyph(candidate, c) for c in needed):
            return candidate, frozenset()
    log.warning("contact sheet: no installed font has %s; drawn as %r (install a font that covers "
                "them, e.g. Noto)", " ".join(f"{c} (U+{ord(c):04X})" for c in sorted(lacking)),
                MISSING)
    return font, frozenset(lacking)


def has_glyph(font, char: str) -> bool:
    """Whether ``font`` draws ``char`` as something other than its missing-glyph box."""
    return _mask(font, char) != _mask(font, _PROBE)


@functools.lru_cache(maxsize=4096)
def _mask(font, char: str):
    mask = font.getmask(char)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=None)
def _truetype(path: str):
    from PIL import ImageFont

    return ImageFont.truetype(path, SIZE)


def _candidates(chars: set[str]) -> list[str]:
    """Installed font files that have every one of ``chars`` (fontconfig), sans-serif first."""
    charset = " ".join(f"{ord(c):x}" for c in sorted(chars))
    listed = _fc(["fc-list", f":charset={charset}", "file", "family"]) or ""
    fonts = [line.split(":")[0].strip() for line in listed.splitlines() if line.strip()]
    return sorted(set(fonts), key=lambda p: ("Sans" not in p, "Mono" in p, p))


def _fc(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None
