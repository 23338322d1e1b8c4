"""The contact sheets of a run dir: per image, the generated image, the preprocessed image and the
top prediction, drawn as the run makes them."""

from __future__ import annotations

import math
from pathlib import Path

from ..fonts import font_for, primary

CONTACT_SHEET = "contact_sheet.png"
THUMB = 96  # side of each thumbnail, in pixels
THUMB_REDUCING_GAP = 1.0  # Pillow's reducing_gap for thumbnails (see _thumbnail)
COLUMNS = 6  # images per line of a sheet
PER_SHEET = 48  # images per sheet: 6 × 8 cells, about 1.2k × 1.1k pixels
MAX_SHEETS = 10  # a big run shows its first PER_SHEET × MAX_SHEETS images
_PAD, _LINE = 4, 12
_CELL_W, _CELL_H = 2 * THUMB + 3 * _PAD, THUMB + 2 * _PAD + 2 * _LINE
_HEADER = _LINE + 2 * _PAD


def contact_sheet_names(count: int, per_sheet: int = PER_SHEET, max_sheets: int = MAX_SHEETS):
    """The sheets a run of ``count`` images gets: ``contact_sheet.png``, ``contact_sheet_2.png``…"""
    pages = max(1, min(math.ceil(count / per_sheet), max_sheets))
    return [CONTACT_SHEET] + [f"contact_sheet_{page}.png" for page in range(2, pages + 1)]


def write_contact_sheet(
    run_dir: Path, rows: list[dict], per_sheet: int = PER_SHEET, max_sheets: int = MAX_SHEETS
) -> list[Path]:
    """Draw the contact sheets of ``rows`` (manifest rows, in the order to show them) from the
    image files they name; see :class:`ContactSheets`. Returns the paths written."""
    from PIL import Image

    from .files import write_bytes

    sheets = ContactSheets(run_dir, len(rows), write_bytes, per_sheet, max_sheets)
    for row in rows:
        images = []
        for key in ("file_name", "preprocessed_file_name"):
            try:
                with Image.open(Path(run_dir) / row[key]) as image:
                    images.append(image.convert("RGB"))
            except Exception:  # a missing image shows as a grey square rather than failing
                images.append(None)
        sheets.add(row, *images)
    return sheets.close()


class ContactSheets:
    """Draws, per image, the generated image, the preprocessed image and the top prediction.

    Images are added one at a time, as a run makes them, and pasted as thumbnails: memory holds
    one sheet whatever the size of the run. Each line of cells is PNG-encoded as soon as it is
    full, so little is left to do after the last image; each finished sheet's file goes to
    ``save(path, png_bytes)`` (``contact_sheet.png``, then ``contact_sheet_2.png``, … for
    ``per_sheet`` images each); after ``max_sheets`` the last sheet says how many images it
    leaves out.
    """

    def __init__(self, run_dir: Path, total: int, save, per_sheet: int = PER_SHEET,
                 max_sheets: int = MAX_SHEETS, names: list[str] | None = None):
        self.run_dir, self.save, self.per_sheet = Path(run_dir), save, per_sheet
        self.names = names or contact_sheet_names(total, per_sheet, max_sheets)
        self.shown = min(total, per_sheet * len(self.names))
        self.left_out = total - self.shown
        self.count = 0
        self._sheet = self._draw = self._png = None
        self._font = None
        # A run repeats its prompts: each is fitted and drawn once, then pasted.
        self._prompt_lines: dict[str, tuple] = {}

    def add(self, row: dict, generated, preprocessed) -> None:
        """Paste one image's cell; ``generated``/``preprocessed`` are images, or None."""
        if self.count >= self.shown:
            return
        page, n = divmod(self.count, self.per_sheet)
        if n == 0:
            self._new_sheet(page)
        columns = self._columns(page)
        x, y = (n % columns) * _CELL_W, _HEADER + (n // columns) * _CELL_H
        for k, image in enumerate((generated, preprocessed)):
            _paste_thumbnail(self._sheet, image, (x + _PAD + k * (THUMB + _PAD), y + _PAD))
        text_y, draw = y + THUMB + 2 * _PAD, self._draw
        font, caption = font_for(_caption(row))
        draw.text((x + _PAD, text_y), _fit(font, caption, _CELL_W - 2 * _PAD),
                  fill="red" if row.get("flagged") else "black", font=font)
        prompt = str(row.get("prompt") or row.get("source") or "")
        if prompt not in self._prompt_lines:
            self._prompt_lines[prompt] = _prompt_line(prompt)
        offset, line = self._prompt_lines[prompt]
        if line is not None:
            self._sheet.paste(line, (x + _PAD + offset[0], text_y + _LINE + offset[1]))
        self.count += 1
        if self.count == self.shown or n == self.per_sheet - 1:
            self._finish_sheet(page)
        elif n % columns == columns - 1:  # a full line of cells: encode it now
            self._encode_to(y + _CELL_H)

    def close(self) -> list[Path]:
        """Save the sheet of a run with no images; return the paths of every sheet."""
        if self.shown == 0:
            self._new_sheet(0)
            self._finish_sheet(0)
        return [self.run_dir / name for name in self.names]

    def _encode_to(self, bottom: int) -> None:
        import numpy as np

        if self._png is None:  # fpng: the whole sheet at once, when it is full
            return
        top = self._png.rows
        self._png.add(np.asarray(self._sheet.crop((0, top, self._sheet.width, bottom))))

    def _finish_sheet(self, page: int) -> None:
        from .. import png

        if self._png is None:
            data = png.encode(self._sheet, None, "fpng")
        else:
            self._encode_to(self._sheet.height)
            data = self._png.finish()
        self.save(self.run_dir / self.names[page], data)
        self._sheet = self._draw = self._png = None

    def _on_page(self, page: int) -> int:
        return min(self.per_sheet, self.shown - page * self.per_sheet)

    def _columns(self, page: int) -> int:
        return max(1, min(COLUMNS, self._on_page(page)))

    def _new_sheet(self, page: int) -> None:
        from PIL import Image, ImageDraw

        from .. import png

        font = self._font = self._font or primary()
        last = page == len(self.names) - 1
        left_out = self.left_out if last else 0
        lines = max(1, math.ceil(max(self._on_page(page), 1) / self._columns(page)))
        size = (self._columns(page) * _CELL_W, _HEADER * (2 if left_out else 1) + lines * _CELL_H)
        self._sheet = Image.new("RGB", size, "white")
        self._draw = ImageDraw.Draw(self._sheet)
        # fpng encodes a whole sheet in a fraction of what zlib takes for it line by line; without
        # fpng, each line of cells is compressed as soon as it is drawn.
        self._png = None if png.available("fpng") else png.PngStream(*size)
        self._draw.text((_PAD, _PAD), "generated | preprocessed | top prediction", fill="gray",
                        font=font)
        if left_out:
            self._draw.text((_PAD, size[1] - _HEADER + _PAD),
                            f"+ {left_out} more images, not shown: see metadata.jsonl",
                            fill="gray", font=font)


def _prompt_line(prompt: str):
    """``(offset, picture)``: ``prompt`` cut to a cell's width and drawn in gray on white,
    cropped to its ink, to paste at ``offset`` from where the text starts (the same pixels as
    drawing it there: the sheet is white below the thumbnails); picture None for no ink."""
    from PIL import Image, ImageDraw

    font, text = font_for(prompt)  # one that has the prompt's script
    line = _fit(font, text, _CELL_W - 2 * _PAD)
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), line, font=font)
    if box[2] <= box[0] or box[3] <= box[1]:
        return (0, 0), None
    picture = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white")
    ImageDraw.Draw(picture).text((-box[0], -box[1]), line, fill="gray", font=font)
    return (box[0], box[1]), picture


def _paste_thumbnail(sheet, image, at: tuple[int, int]) -> None:
    from PIL import Image

    if image is None:
        image = Image.new("RGB", (THUMB, THUMB), "lightgray")
    else:
        image = _thumbnail(image if image.mode == "RGB" else image.convert("RGB"))
    sheet.paste(image, (at[0] + (THUMB - image.width) // 2, at[1] + (THUMB - image.height) // 2))


def _thumbnail(image):
    """``image`` scaled to fit a THUMB² square, keeping its aspect ratio. Small images are
    enlarged with hard pixel edges; large ones are first shrunk by the largest whole factor that
    keeps them at least THUMB (averaging boxes of pixels), then filtered: for 512² and 224²
    photographs about half the time of the filter alone, within 3 grey levels of it on average."""
    from PIL import Image

    scale = THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if scale > 1:
        return image.resize(size, Image.NEAREST)
    return image.resize(size, Image.BICUBIC, reducing_gap=THUMB_REDUCING_GAP)


def _caption(row: dict) -> str:
    if row.get("probability") is None:
        prediction = "no prediction"
    else:
        prediction = f"{row.get('prediction')} (p={row['probability']:.2f})"
    if row.get("label") is not None:  # a labelled run: the true class beside the prediction
        prediction = f"{row['label']} → {prediction}"
    flagged = f" FLAGGED {row['flagged']}" if row.get("flagged") else ""
    return f"#{row.get('index')}: {prediction}{flagged}"


def _fit(font, text: str, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels: the longest prefix that fits,
    found by bisection (prompts run to hundreds of characters)."""
    if font.getlength(text) <= width:
        return text
    fits, longest = 0, len(text) - 1  # text[:fits] + "…" fits; longer than ``longest`` does not
    while fits < longest:
        middle = (fits + longest + 1) // 2
        if font.getlength(text[:middle] + "…") <= width:
            fits = middle
        else:
            longest = middle - 1
    return text[:fits] + "…"
