"""The manifest of a run dir, ``metadata.jsonl``, and the names of the files its rows name.

The manifest follows the Hugging Face ``imagefolder`` layout: one JSON object per line with
``file_name`` (the generated image) and ``preprocessed_file_name`` (what the model saw), so
``datasets.load_dataset("imagefolder", data_dir=RUN_DIR)`` gives an ``image`` and a
``preprocessed`` column beside the metadata. Images the manifest does not name (the contact sheet)
are not rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_path, json_safe

MANIFEST = "metadata.jsonl"


def generated_name(index: int) -> str:
    return f"generated_image_{index}.png"


def preprocessed_name(index: int) -> str:
    return f"preprocessed_image_{index}.png"


def dumps_row(row: dict) -> str:
    """One manifest line (sorted keys, so equal rows are equal bytes)."""
    return json.dumps(json_safe(row), sort_keys=True, allow_nan=False) + "\n"


def read_manifest(run_dir: Path) -> dict[int, dict]:
    """Return the manifest rows of ``run_dir`` by image index (a torn last line is ignored)."""
    rows: dict[int, dict] = {}
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            rows[int(row["index"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def is_complete(run_dir: Path, row: dict) -> bool:
    """True when every file a manifest row names is inside ``run_dir`` and decodes as an image."""
    from PIL import Image

    for key in ("file_name", "preprocessed_file_name"):
        name = row.get(key)
        if not isinstance(name, str) or Path(name).name != name:
            return False
        try:
            with Image.open(Path(run_dir) / name) as image:
                image.load()
        except Exception:  # missing, truncated or not an image: it is made again
            return False
    return True


def write_manifest(run_dir: Path, rows: dict[int, dict]) -> None:
    """Replace the manifest with ``rows``, sorted by index, in one atomic rename."""
    with atomic_path(Path(run_dir) / MANIFEST) as tmp:
        tmp.write_text("".join(dumps_row(rows[i]) for i in sorted(rows)), encoding="utf-8")


class ManifestWriter:
    """Appends manifest rows, one complete JSON line at a time, flushed as written."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._file = open(self.run_dir / MANIFEST, "a", encoding="utf-8")

    def append(self, row: dict) -> None:
        self._file.write(dumps_row(row))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def finalize(self, rows: dict[int, dict]) -> None:
        """Rewrite the manifest sorted by index, so a resumed run ends as an uninterrupted one."""
        self.close()
        write_manifest(self.run_dir, rows)
