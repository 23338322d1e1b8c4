"""The run dir on disk: atomic writes, the manifest, and which images are already complete."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MANIFEST = "metadata.jsonl"

# mkstemp creates files 0600; outputs get the permissions any other new file would.
_UMASK = os.umask(0)
os.umask(_UMASK)


def generated_name(index: int) -> str:
    return f"generated_image_{index}.png"


def preprocessed_name(index: int) -> str:
    return f"preprocessed_image_{index}.png"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(image, path: Path, compress_level: int = 6, text: dict[str, Any] | None = None) -> None:
    """Write ``image`` as a PNG atomically, with ``text`` as PNG text chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        if value is not None:
            info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level, pnginfo=info)


def read_manifest(run_dir: Path) -> dict[int, dict]:
    """Return the manifest rows of ``run_dir`` by image index (a torn last line is ignored)."""
    rows: dict[int, dict] = {}
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            rows[int(row["index"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def is_complete(run_dir: Path, row: dict) -> bool:
    """True when every file a manifest row names exists and decodes as an image."""
    from PIL import Image

    for key in ("file_name", "preprocessed_file_name"):
        name = row.get(key)
        if name is None:
            continue
        try:
            with Image.open(Path(run_dir) / name) as image:
                image.load()
        except Exception:
            return False
    return True


class ManifestWriter:
    """Appends manifest rows, one complete JSON line at a time, flushed as written."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / MANIFEST
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def finalize(self, rows: dict[int, dict]) -> None:
        """Rewrite the manifest sorted by index, so a resumed run ends as an uninterrupted one."""
        self.close()
        with atomic_path(self.path) as tmp:
            tmp.write_text(
                "".join(json.dumps(rows[i], sort_keys=True) + "\n" for i in sorted(rows)),
                encoding="utf-8",
            )
