"""Files of a run dir, written so that a reader never sees half of one.

Every file is written to a temporary name beside its place and renamed into place once complete
(:func:`atomic_path`); a killed run leaves only temporary files, which the next run removes.
PNGs are encoded here too: whole images (:func:`save_png`) and pictures drawn band by band
(:class:`PngStream`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import AilusionError

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


#: zlib's compression strategies by their config names (``png_strategy``).
PNG_STRATEGIES = {
    "default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED,
    "huffman_only": zlib.Z_HUFFMAN_ONLY, "rle": zlib.Z_RLE, "fixed": zlib.Z_FIXED,
}


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data)
    except OSError as exc:
        raise AilusionError(f"{path}: cannot write: {exc.strerror or exc}") from exc


class PngStream:
    """An 8-bit RGB PNG encoded band by band, as a picture is drawn top to bottom.

    Pillow encodes whole images only, so a picture finished at the end of a run (the contact
    sheet) would be compressed all at once after the last image; this encoder takes each band of
    rows as soon as it is final and leaves only the last band for the end. Rows are stored with
    PNG's "Up" filter (each byte minus the one above it), which suits pictures of large flat areas.
    """

    _UP = 2  # PNG filter type

    def __init__(self, width: int, height: int, compress_level: int = 1, strategy: str = "rle"):
        self.width, self.height, self.rows = width, height, 0
        self._zlib = zlib.compressobj(compress_level, strategy=PNG_STRATEGIES[strategy])
        self._above = None
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
        self._parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]

    def add(self, band) -> None:
        """Encode the next rows: a (rows, width, 3) uint8 array (or anything numpy can make one)."""
        import numpy as np

        band = np.asarray(band, dtype=np.uint8).reshape(-1, self.width * 3)
        if self.rows + len(band) > self.height:
            raise ValueError(f"PNG of {self.height} rows given {self.rows + len(band)}")
        above = np.vstack([
            self._above if self._above is not None else np.zeros((1, self.width * 3), np.uint8),
            band[:-1],
        ])
        filtered = np.empty((len(band), 1 + self.width * 3), np.uint8)
        filtered[:, 0] = self._UP
        np.subtract(band, above, out=filtered[:, 1:])  # modulo 256, as the filter is defined
        self._above, self.rows = band[-1:].copy(), self.rows + len(band)
        self._idat(self._zlib.compress(filtered.tobytes()))

    def finish(self) -> bytes:
        """The whole file, once every row has been added."""
        if self.rows != self.height:
            raise ValueError(f"PNG of {self.height} rows given {self.rows}")
        self._idat(self._zlib.flush())
        return b"".join(self._parts + [_png_chunk(b"IEND", b"")])

    def _idat(self, data: bytes) -> None:
        if data:
            self._parts.append(_png_chunk(b"IDAT", data))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def save_png(image, path: Path, compress_level: int = 6, text: dict[str, Any] | None = None,
             strategy: str = "rle") -> None:
    """Write ``image`` as a PNG atomically, with ``text`` as PNG text chunks; ``strategy`` is one
    of :data:`PNG_STRATEGIES`."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        if value is not None:
            info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG", compress_level=compress_level, pnginfo=info,
                       compress_type=PNG_STRATEGIES[strategy])
    except OSError as exc:
        raise AilusionError(f"{path}: cannot write: {exc.strerror or exc}") from exc


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
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(value), indent=1) + "\n", encoding="utf-8")
