"""The fonts the ``glyphs`` generator draws with: Pillow's own scalable font and the system's.

``generator.fonts`` is a list of entries, each one of

- ``default``: Pillow's built-in scalable font (``ImageFont.load_default(size=…)``);
- ``strokes``: the digits as people write them, drawn with a round pen (strokes.py), one face
  per form;
- ``system``: every TrueType/OpenType font fontconfig (``fc-list``) knows, or, without fontconfig,
  every .ttf/.otf/.ttc under the usual font folders;
- a family name or a glob over family names, e.g. ``DejaVu Sans``, ``Nimbus*``, ``*Mono*``
  (matched against "family" and "family style", case-insensitively);
- a path to a font file.

A font that lacks a character of a class's text is left out for the whole run (it would draw
its "missing glyph" box), and so are the families of ``exclude_fonts`` (picture fonts whose
letters are symbols). Fonts are kept in sorted order, so an image's seed picks the same font
on every run of one machine.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ailusion.errors import ConfigError

from . import strokes

EXTENSIONS = (".ttf", ".otf", ".ttc")
FONT_DIRS = (
    "/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts",
    "/Library/Fonts", "/System/Library/Fonts", "~/Library/Fonts", "C:/Windows/Fonts",
)
DEFAULT = "default"  # the name of Pillow's font in the manifest's ``font`` column
STROKES = "Strokes"  # the family of the pen-drawn digits' faces ("Strokes 1", …)
STROKES_ENTRY = "strokes"  # their entry in ``generator.fonts``


@dataclass(frozen=True, order=True)
class Font:
    """One face: ``path`` is None for Pillow's built-in font and for the pen-drawn faces (family
    ``Strokes``, ``index`` the form they draw)."""

    family: str  # "default" for Pillow's font
    style: str = ""
    path: str | None = None
    index: int = 0  # face index inside a .ttc collection

    @property
    def is_strokes(self) -> bool:
        return self.path is None and self.family == STROKES

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()

    def load(self, size: int):
        return _load(self.path, self.index, size)


@functools.lru_cache(maxsize=4096)
def _load(path: str | None, index: int, size: int):
    from PIL import ImageFont

    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size, index=index)


@functools.lru_cache(maxsize=1)
def system_fonts() -> tuple[Font, ...]:
    """Every scalable font of the system, one per (family, style), in sorted order."""
    fonts: dict[str, Font] = {}
    for family, style, path, index in _fontconfig() if shutil.which("fc-list") else _scan():
        if path.lower().endswith(EXTENSIONS):
            font = Font(family, style, path, index)
            fonts.setdefault(font.name.lower(), font)
    return tuple(sorted(fonts.values()))


def _fontconfig():
    out = subprocess.run(
        ["fc-list", "--format", "%{family[0]}\t%{style[0]}\t%{index}\t%{file}\n"],
        capture_output=True, text=True, timeout=60,
    ).stdout
    for line in sorted(out.splitlines()):
        parts = line.split("\t")
        if len(parts) == 4:
            family, style, index, path = parts
            yield family, style, path, int(index or 0)


def _scan():
    dirs = list(FONT_DIRS)
    if sys.platform == "win32" and os.environ.get("WINDIR"):
        dirs.append(os.path.join(os.environ["WINDIR"], "Fonts"))
    for folder in dirs:
        root = Path(folder).expanduser()
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() in EXTENSIONS:
                    try:
                        family, style = _load(str(path), 0, 12).getname()
                    except OSError:
                        continue
                    yield family, style, str(path), 0


def _covers(font: Font, chars: str) -> bool:
    """Whether ``font`` has a glyph of its own for every character (not the missing-glyph box)."""
    from PIL import Image, ImageDraw

    if font.is_strokes:
        return strokes.covers(chars)

    def mask(face, char: str) -> bytes:
        image = Image.new("L", (48, 48), 0)
        ImageDraw.Draw(image).text((8, 8), char, fill=255, font=face)
        return image.tobytes()

    try:
        face = font.load(24)
        missing = mask(face, "\U0010fffd")
        return all((m := mask(face, c)) != missing and any(m) for c in chars)
    except (OSError, ValueError):
        return False


def resolve_fonts(entries: list[str], exclude: list[str], texts: list[str]) -> list[Font]:
    """The fonts of ``generator.fonts`` that draw every character of ``texts``."""
    chars = "".join(sorted({c for text in texts for c in text if not c.isspace()}))
    chosen: dict[Font, None] = {}
    for entry in entries:
        found = _match(entry)
        if not found:
            raise ConfigError(
                "generator.fonts", f"no font matches {entry!r} (give 'default', 'system', a "
                "family name or glob as 'fc-list : family' shows them, or a font file)"
            )
        chosen.update(dict.fromkeys(found))
    fonts = [
        f for f in chosen
        if not any(fnmatch.fnmatch(f.family.lower(), pattern.lower()) for pattern in exclude)
    ]
    usable = [f for f in fonts if _covers(f, chars)]
    if not usable:
        only = " (strokes draws the digits 0-9 only)" if STROKES_ENTRY in entries else ""
        raise ConfigError(
            "generator.fonts", f"none of the {len(fonts)} fonts of {entries} draws every "
            f"character of {chars!r}{only}; install fonts that do (e.g. fonts-dejavu) or add "
            "'default'"
        )
    return usable


def _match(entry: str) -> list[Font]:
    if entry == DEFAULT:
        return [Font(DEFAULT)]
    if entry == STROKES_ENTRY:
        return [Font(STROKES, str(k + 1), None, k) for k in range(strokes.FACES)]
    if entry == "system":
        return list(system_fonts())
    path = Path(entry).expanduser()
    if path.suffix.lower() in EXTENSIONS:
        if not path.is_file():
            raise ConfigError("generator.fonts", f"no such font file: {path}")
        try:
            family, style = _load(str(path), 0, 12).getname()
        except OSError as exc:
            raise ConfigError("generator.fonts", f"cannot read {path} as a font: {exc}") from None
        return [Font(family, style, str(path))]
    pattern = entry.lower()
    return [
        f for f in system_fonts()
        if fnmatch.fnmatch(f.family.lower(), pattern) or fnmatch.fnmatch(f.name.lower(), pattern)
    ]
