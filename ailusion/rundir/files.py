"""Files of a run dir, written so that a reader never sees half of one.

Every file is written to a temporary name beside its place and renamed into place once complete
(:func:`atomic_path`); a killed run leaves only temporary files, which the next run removes.
PNGs are encoded by :mod:`ailusion.png` and written here (:func:`save_png`).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import png
from ..errors import AilusionError
from . import records

# mkstemp creates files 0600; outputs get the permissions any other new file would.
_UMASK = os.umask(0)
os.umask(_UMASK)


def is_temporary(name: str) -> bool:
    """True for the name of a file :func:`atomic_path` had not yet renamed into place."""
    return name.startswith(".") and name.endswith(".tmp")


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


def write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically: one new temporary file beside it (made with the
    permissions of any new file), one write, one rename. Returns its sha256 (what the manifest
    records)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise write_error(path, exc) from exc
    return records.sha256_bytes(data)


class StreamedFile:
    """A file written piece by piece as a run goes, under a temporary name beside ``path``, and
    renamed into place whole by :meth:`close` (:meth:`discard` drops it): a reader never sees
    half of it, and nothing is left to write after the last piece."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}.tmp")
        try:
            self._file = open(self._tmp, "xb")
        except OSError as exc:
            raise write_error(self.path, exc) from exc

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise write_error(self.path, exc) from exc

    def close(self) -> None:
        """Put the file in place."""
        try:
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.discard()
            raise write_error(self.path, exc) from exc

    def discard(self) -> None:
        try:
            self._file.close()
        except OSError:  # a full disk cannot take the buffered rest: it is dropped anyway
            pass
        self._tmp.unlink(missing_ok=True)


def write_error(path: Path, exc: OSError) -> AilusionError:
    """The one-line error for a file that could not be written, naming the file (not its
    temporary name): a full disk, a read-only dir, missing permissions."""
    return AilusionError(f"{path}: cannot write: {exc.strerror or exc}")


#: Manifest fields written into a generated image's PNG text chunks (what made the image).
PNG_TEXT_KEYS = (
    "prompt", "negative_prompt", "seed", "model", "scheduler", "num_inference_steps",
    "guidance_scale", "height", "width", "label",
)


def save_png(image, path: Path, compress_level: int = 6, text: dict[str, Any] | None = None,
             strategy: str = "rle", encoder: str = "pillow") -> str:
    """Write ``image`` as a PNG atomically, with ``text`` as PNG text chunks, encoded in memory
    by ``encoder`` and written in one piece; see :func:`ailusion.png.encode`. Returns the file's
    sha256."""
    return write_bytes(path, png.encode(image, text, encoder, compress_level, strategy))


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None``: JSON has no NaN, and readers reject it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` to ``path`` as indented JSON (NaN as null), atomically."""
    write_bytes(path, (json.dumps(json_safe(value), indent=1) + "\n").encode("utf-8"))
