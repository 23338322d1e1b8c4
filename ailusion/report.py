"""What a run tells a person at the end: the predictions table, the summary, the contact sheet."""

from __future__ import annotations

import math
from pathlib import Path

MAX_ROWS = 20

CONTACT_SHEET = "contact_sheet.png"
THUMB = 96  # side of each thumbnail, in pixels
COLUMNS = 6  # images per line of a sheet
PER_SHEET = 48  # images per sheet: 6 × 8 cells, about 1.2k × 1.1k pixels
MAX_SHEETS = 10  # a big run shows its first PER_SHEET × MAX_SHEETS images
_PAD, _LINE = 4, 12


def print_predictions(result, max_rows: int = MAX_ROWS) -> None:
    """Print one line per image: its file, top label and probability."""
    import numpy as np

    from .streaming import softmax

    probabilities = softmax(result.predictions.astype("float64"))
    print(f"{'image':<28} {'label':<12} {'probability':>11}")
    for path, row in list(zip(result.image_paths, probabilities))[:max_rows]:
        if not np.isfinite(row).all():  # NaN logits: flagged, no prediction
            print(f"{path.name:<28} {'-':<12} {'nan':>11}")
            continue
        top = int(row.argmax())
        print(f"{path.name:<28} {result.labels[top]:<12} {row[top]:>11.4f}")
    if len(result.image_paths) > max_rows:
        print(f"… {len(result.image_paths) - max_rows} more in predictions.json")


def print_summary(result) -> None:
    """Print what the run wrote, skipped and flagged, how long it took, and where."""
    s = result.summary
    print(
        f"ailusion: {s['written']} images written, {s['skipped']} skipped, "
        f"{s['flagged']} flagged in {s['seconds']:.1f}s → {s['run_dir']}"
    )


def contact_sheet_names(count: int, per_sheet: int = PER_SHEET, max_sheets: int = MAX_SHEETS):
    """The sheets a run of ``count`` images gets: ``contact_sheet.png``, ``contact_sheet_2.png``…"""
    pages = max(1, min(math.ceil(count / per_sheet), max_sheets))
    return [CONTACT_SHEET] + [f"contact_sheet_{page}.png" for page in range(2, pages + 1)]


def write_contact_sheet(
    run_dir: Path, rows: list[dict], per_sheet: int = PER_SHEET, max_sheets: int = MAX_SHEETS
) -> list[Path]:
    """Draw, per image, the generated image, the preprocessed image and the top prediction.

    Args:
        run_dir (`Path`):
            The run dir; ``rows`` name their files relative to it.
        rows (`list[dict]`):
            Manifest rows, in the order to show them.
        per_sheet (`int`, *optional*, defaults to 48):
            Images per sheet; a run with more gets ``contact_sheet_2.png`` and so on.
        max_sheets (`int`, *optional*, defaults to 10):
            At most this many sheets; the last one says how many images it leaves out.

    Images are opened one at a time and pasted as thumbnails, so memory holds one sheet whatever
    the size of the run. Returns the paths written.
    """
    from .dataset import save_png

    run_dir = Path(run_dir)
    names = contact_sheet_names(len(rows), per_sheet, max_sheets)
    for page, name in enumerate(names):
        chunk = rows[page * per_sheet:(page + 1) * per_sheet]
        left_out = len(rows) - per_sheet * len(names) if page == len(names) - 1 else 0
        save_png(_sheet(run_dir, chunk, max(left_out, 0)), run_dir / name)
    return [run_dir / name for name in names]


def _sheet(run_dir: Path, rows: list[dict], left_out: int):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    cell_w, cell_h = 2 * THUMB + 3 * _PAD, THUMB + 2 * _PAD + 2 * _LINE
    columns = max(1, min(COLUMNS, len(rows)))
    lines = max(1, math.ceil(len(rows) / columns))
    header = _LINE + 2 * _PAD
    sheet = Image.new("RGB", (columns * cell_w, header * (2 if left_out else 1) + lines * cell_h),
                      "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((_PAD, _PAD), "generated | preprocessed | top prediction", fill="gray", font=font)
    if left_out:
        draw.text((_PAD, sheet.height - header + _PAD),
                  f"+ {left_out} more images, not shown: see metadata.jsonl", fill="gray", font=font)
    for n, row in enumerate(rows):
        x, y = (n % columns) * cell_w, header + (n // columns) * cell_h
        for k, key in enumerate(("file_name", "preprocessed_file_name")):
            _paste_thumbnail(sheet, run_dir / row[key], (x + _PAD + k * (THUMB + _PAD), y + _PAD))
        text_y = y + THUMB + 2 * _PAD
        draw.text((x + _PAD, text_y), _fit(draw, font, _caption(row), cell_w - 2 * _PAD),
                  fill="red" if row.get("flagged") else "black", font=font)
        draw.text((x + _PAD, text_y + _LINE),
                  _fit(draw, font, str(row.get("prompt") or row.get("source") or ""),
                       cell_w - 2 * _PAD), fill="gray", font=font)
    return sheet


def _paste_thumbnail(sheet, path: Path, at: tuple[int, int]) -> None:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            # Small images are enlarged with hard pixel edges, large ones reduced smoothly.
            small = max(image.size) < THUMB
            resample = Image.NEAREST if small else Image.BICUBIC
            image = ImageOps.contain(image.convert("RGB"), (THUMB, THUMB), resample)
    except Exception:  # a missing image shows as a grey square rather than failing the run
        image = Image.new("RGB", (THUMB, THUMB), "lightgray")
    sheet.paste(image, (at[0] + (THUMB - image.width) // 2, at[1] + (THUMB - image.height) // 2))


def _caption(row: dict) -> str:
    if row.get("probability") is None:
        prediction = "no prediction"
    else:
        prediction = f"{row.get('label')} (p={row['probability']:.2f})"
    flagged = f" FLAGGED {row['flagged']}" if row.get("flagged") else ""
    return f"#{row.get('index')}: {prediction}{flagged}"


def _fit(draw, font, text: str, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
