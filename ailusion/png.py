"""PNG encoding: Pillow (zlib, every image mode) or fpng (8-bit RGB and RGBA, many times faster);
pictures drawn band by band (:class:`PngStream`).

Both write the same text chunks (prompt, seed, settings, …) right after the header and decode to
the same pixels; a reader cannot tell which wrote a file but by its size. ``png_encoder=fpng``
needs the ``fpng`` package (``pip install 'ailusion[fpng]'``); where it cannot load, the run says
so in one line and encodes with Pillow. fpng has one fixed compression: ``png_compress_level``
and ``png_strategy`` apply to Pillow only, and images of other modes (grayscale ``L``, 16-bit)
are always encoded by Pillow. The contact sheet, a picture for people rather than data, is
encoded with fpng wherever it loads (:func:`available`).
"""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib
from typing import Any

log = logging.getLogger(__name__)

#: The encoders ``png_encoder`` can name.
ENCODERS = ("pillow", "fpng")
#: zlib's compression strategies by their config names (``png_strategy``).
PNG_STRATEGIES = {
    "default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED,
    "huffman_only": zlib.Z_HUFFMAN_ONLY, "rle": zlib.Z_RLE, "fixed": zlib.Z_FIXED,
}
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FPNG_CHANNELS = {"RGB": 3, "RGBA": 4}
_fpng: dict = {}  # once tried: "module", or "error" (why fpng cannot load)


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_info(text: dict[str, Any] | None):
    """``text`` as Pillow's ``PngInfo``: strings as they are, other values as JSON, ``None``
    values left out (non-Latin-1 strings become ``iTXt`` chunks, as Pillow writes them)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        if value is not None:
            info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    return info


def _load_fpng():
    """The fpng module, or None where it cannot load (tried once per process)."""
    if not _fpng:
        try:
            import fpng

            _fpng["module"] = fpng
        except Exception as exc:  # no wheel for this platform, or a CPU it does not support
            _fpng["error"] = f"{type(exc).__name__}: {exc}"
    return _fpng.get("module")


def available(encoder: str) -> bool:
    """Whether ``encoder`` can encode here (fpng: whether it loads), without a warning."""
    return encoder != "fpng" or _load_fpng() is not None


def resolve(encoder: str) -> str:
    """The encoder a run configured with ``png_encoder=encoder`` uses: ``fpng`` where it loads,
    else ``pillow``, which a one-line warning names."""
    if available(encoder):
        return encoder
    log.warning(
        "png_encoder=fpng: fpng cannot load here (%s); encoding PNGs with Pillow instead "
        "(pip install 'ailusion[fpng]')", _fpng["error"],
    )
    return "pillow"


def encode(image, text: dict[str, Any] | None = None, encoder: str = "pillow",
           compress_level: int = 6, strategy: str = "rle") -> bytes:
    """``image`` (a PIL image) as PNG bytes, with ``text`` as text chunks; see the module doc."""
    info = text_info(text)
    if encoder == "fpng" and image.mode in _FPNG_CHANNELS:
        fpng = _load_fpng()
        if fpng is not None:
            data = fpng.from_bytes(image.tobytes(), image.width, image.height,
                                   _FPNG_CHANNELS[image.mode])
            return _with_chunks(data, info.chunks)
    elif encoder not in ENCODERS:
        raise ValueError(f"png_encoder must be one of {', '.join(ENCODERS)}, got {encoder!r}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level, pnginfo=info,
               compress_type=PNG_STRATEGIES[strategy])
    return buffer.getvalue()


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
        self._parts = [_SIGNATURE, chunk(b"IHDR", header)]

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
        return b"".join(self._parts + [chunk(b"IEND", b"")])

    def _idat(self, data: bytes) -> None:
        if data:
            self._parts.append(chunk(b"IDAT", data))


def _with_chunks(data: bytes, chunks) -> bytes:
    """``data`` (a PNG) with ``chunks`` (Pillow's ``(type, data, after_idat)``) after its IHDR."""
    if not data.startswith(_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("the encoder wrote no PNG header")
    end = len(_SIGNATURE) + 12 + struct.unpack(">I", data[8:12])[0]  # length, type, data, CRC
    return b"".join([data[:end], *(chunk(kind, body) for kind, body, *_ in chunks), data[end:]])
