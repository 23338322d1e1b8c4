"""Shard formats: images in files of ``output.shard_size`` each, each with its ``_stats.json``.

Image ``i`` (1-based, numbered over the whole run) is in shard ``(i - 1) // shard_size``, named
``00000.tar`` (or ``.parquet``, …) whatever the job that writes it: with ``shard``/``num_shards``
jobs, job ``k`` writes shards ``k``, ``k + num_shards``, …, whole. A shard is written to a
temporary file, renamed into place once complete, and then described by ``00000_stats.json``
(count, flagged, seconds, bytes, sha256): a shard with both is complete and a rerun keeps it as it
is, once its file has the size and sha256 the stats record; an open one (killed mid-shard) is
written again from its first image, and so is a complete one whose file changed since (with a
warning naming it). What a rerun skips is kept as ranges of image numbers (:class:`Ranges`), so
its memory does not grow with the planned count. Each shard also gets a contact sheet of its
first images, ``contact_sheets/00000.png``.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

from .. import png
from ..errors import AilusionError
from . import files, records
from .sheets import PER_SHEET, ContactSheets
from .writers import RunInfo, Sample

INFO = "info.json"
SHEETS = "contact_sheets"


def shard_of(index: int, shard_size: int) -> int:
    return (index - 1) // shard_size


def shard_name(number: int, suffix: str) -> str:
    return f"{number:05d}{suffix}"


def stats_name(number: int) -> str:
    return f"{number:05d}_stats.json"


def sample_key(index: int) -> str:
    """The key of image ``index`` in a shard (webdataset's ``__key__``)."""
    return f"{index:08d}"


def job_requests(requests, shard: int, num_shards: int, shard_size: int):
    """The requests job ``shard`` of ``num_shards`` makes: those of the whole blocks of
    ``shard_size`` images (output shards) ``shard``, ``shard + num_shards``, … (``requests`` in
    image order). A lazy plan stays lazy:
    the result is a :class:`Chain` of its slices, one per output shard."""
    if not len(requests):
        return []
    indices = getattr(requests, "indices", None)  # a Plan's numbers, without making a request
    first, last = ((indices[0], indices[-1]) if isinstance(indices, range)
                   else (requests[0].index, requests[-1].index))
    if last - first != len(requests) - 1:  # not numbered one by one: pick them out
        return [r for r in requests if shard_of(r.index, shard_size) % num_shards == shard]
    low = shard_of(first, shard_size)
    parts = []
    for number in range(low + (shard - low) % num_shards, shard_of(last, shard_size) + 1,
                        num_shards):
        start = max(number * shard_size + 1 - first, 0)  # position of its first image
        parts.append(requests[start:(number + 1) * shard_size + 1 - first])
    return Chain(parts)


def block_spans(requests, shard_size: int) -> Iterator[tuple[int, range]]:
    """``(block number, image numbers)`` of ``requests`` block after block (output shards, array
    chunks), in order; from the numbers of a plan's slices where it can, without making a
    request."""
    for part in requests.parts if isinstance(requests, Chain) else [requests]:
        indices = getattr(part, "indices", None)
        if not (isinstance(indices, range) and indices.step == 1):
            for request in part:
                yield shard_of(request.index, shard_size), range(request.index, request.index + 1)
            continue
        for number in range(shard_of(indices.start, shard_size),
                            shard_of(indices.stop - 1, shard_size) + 1 if len(indices) else 0):
            low = max(indices.start, number * shard_size + 1)
            yield number, range(low, min(indices.stop, (number + 1) * shard_size + 1))


def block_counts(requests, shard_size: int) -> dict[int, int]:
    """How many of ``requests`` each block holds, by its number (:func:`block_spans`)."""
    counts: dict[int, int] = {}
    for number, span in block_spans(requests, shard_size):
        counts[number] = counts.get(number, 0) + len(span)
    return counts


class Chain(Sequence):
    """Sequences read one after the other as one (this job's output shards of a plan)."""

    def __init__(self, parts: list):
        self.parts = [part for part in parts if len(part)]
        self._starts = [0]
        for part in self.parts:
            self._starts.append(self._starts[-1] + len(part))

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self._starts, i) - 1
        return self.parts[k][i - self._starts[k]]

    def __iter__(self) -> Iterator:
        for part in self.parts:
            yield from part


class Ranges:
    """Image numbers, added in increasing order, kept as ranges: ``in`` and ``len`` without a set
    of the numbers (a rerun that skips a million complete images holds a few ranges)."""

    def __init__(self):
        self._starts: list[int] = []
        self._stops: list[int] = []
        self._len = 0

    def add(self, index: int) -> None:
        self.add_range(range(index, index + 1))

    def add_range(self, numbers: range) -> None:
        """Add the consecutive numbers ``numbers``, all above those added so far."""
        if not len(numbers):
            return
        if self._stops and numbers.start < self._stops[-1]:
            raise ValueError(f"image {numbers.start} added after {self._stops[-1] - 1}")
        if self._stops and self._stops[-1] == numbers.start:
            self._stops[-1] = numbers.stop
        else:
            self._starts.append(numbers.start)
            self._stops.append(numbers.stop)
        self._len += len(numbers)

    def __contains__(self, index) -> bool:
        k = bisect.bisect_right(self._starts, index) - 1
        return k >= 0 and index < self._stops[k]

    def __len__(self) -> int:
        return self._len

    def ranges(self) -> list[range]:
        return [range(a, b) for a, b in zip(self._starts, self._stops)]


def npy_bytes(array) -> bytes:
    """``array`` as the bytes of a ``.npy`` file."""
    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


class ShardWriter:
    """A writer of shard files; a format subclasses it and writes one shard's file:
    :meth:`open_shard`, :meth:`write_sample` per image, :meth:`close_shard`.

    ``encode`` gives each sample ``encoded["png"]`` (the generated image as PNG bytes, with the
    run's PNG settings) and ``encoded["preprocessed.npy"]`` and ``encoded["logits.npy"]``.
    """

    #: the file name ending of a shard (``00000.tar``)
    suffix = ".bin"
    #: what a shard of this format is, for messages ("tar shard")
    kind = "shard"

    def __init__(self, config, context):
        self.run_dir = Path(context.run_dir)
        self.shard_size = int(config.shard_size)
        self.format = str(config.format)
        self.png_level = int(context.config.get("png_compress_level", 6))
        self.png_strategy = str(context.config.get("png_strategy", "rle"))
        self.png_encoder = png.resolve(str(context.config.get("png_encoder", "pillow")))
        self._counts: dict[int, int] = {}  # images of each of this job's shards
        self._open: int | None = None  # the shard being written
        self._tmp: Path | None = None
        self._written = self._flagged = 0
        self._started = 0.0
        self._sheets: ContactSheets | None = None

    # --- what a format writes ---------------------------------------------------------------

    def open_shard(self, path: Path, info: RunInfo) -> None:
        """Start writing a shard into the file ``path``."""
        raise NotImplementedError

    def write_sample(self, sample: Sample) -> None:
        """Write one image into the open shard, in image order."""
        raise NotImplementedError

    def close_shard(self) -> None:
        """Finish the open shard's file (it is renamed into place afterwards)."""
        raise NotImplementedError

    # --- the Writer contract ----------------------------------------------------------------

    def complete(self, requests):
        self._counts = block_counts(requests, self.shard_size)
        complete = {n for n, count in self._counts.items() if self._is_complete(n, count)}
        kept = Ranges()
        for number, span in block_spans(requests, self.shard_size) if complete else ():
            if number in complete:
                kept.add_range(span)
        return {}, kept

    def start(self, requests, info: RunInfo, done) -> None:
        self.info = info
        files.write_json(self.run_dir / INFO, info.to_json())

    def encode(self, sample: Sample) -> None:
        text = {k: v for k, v in sample.row.items() if k in files.PNG_TEXT_KEYS}
        sample.encoded["png"] = png.encode(sample.image, text, self.png_encoder, self.png_level,
                                           self.png_strategy)

    def encode_processed(self, sample: Sample) -> None:
        sample.encoded["preprocessed.npy"] = npy_bytes(sample.array)
        sample.encoded["logits.npy"] = npy_bytes(sample.logits)

    def add(self, sample: Sample) -> None:
        number = shard_of(sample.index, self.shard_size)
        if self._open != number:
            if self._open is not None:
                raise AilusionError(
                    f"{self._final(self._open)}: shard closed with "
                    f"{self._written} of {self._counts[self._open]} images"
                )
            self._start(number)
        self.write_sample(sample)
        self._sheets.add(sample.row, sample.image, sample.view)
        self._written += 1
        self._flagged += bool(sample.row.get("flagged"))
        if self._written == self._counts[number]:
            self._close()

    def finish(self) -> None:
        if self._open is not None:
            self._close()

    def abort(self) -> None:
        if self._open is not None:
            try:
                self.close_shard()
            except Exception:  # the run failed already; its error is the one to report
                pass
            self._open = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    # --- shards -----------------------------------------------------------------------------

    def _final(self, number: int) -> Path:
        return self.run_dir / shard_name(number, self.suffix)

    def _is_complete(self, number: int, count: int) -> bool:
        path, stats = self._final(number), self.run_dir / stats_name(number)
        try:
            record = json.loads(stats.read_text(encoding="utf-8"))
            if not (record["count"] == count and record["bytes"] == path.stat().st_size
                    and record["shard"] == path.name and isinstance(record["sha256"], str)):
                return False
        except (OSError, ValueError, KeyError, TypeError):
            return False  # missing, torn or another shard's: written again
        found = records.sha256_file(path)
        if found != record["sha256"]:  # the size is right, the bytes are not: damaged since
            warnings.warn(f"{path}: differs from the shard written (sha256 "
                          f"{(found or 'unreadable')[:12]}…, recorded {record['sha256'][:12]}…); "
                          "it is written again")
            return False
        return True

    def _start(self, number: int) -> None:
        final = self._final(number)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=self.run_dir)
        os.close(fd)
        self._open, self._tmp, self._written, self._flagged = number, Path(tmp), 0, 0
        self._started = time.perf_counter()
        (self.run_dir / SHEETS).mkdir(exist_ok=True)
        self._sheets = ContactSheets(
            self.run_dir / SHEETS, min(self._counts[number], PER_SHEET), files.write_bytes,
            names=[f"{number:05d}.png"],
        )
        self.open_shard(self._tmp, self.info)

    def _close(self) -> None:
        number, tmp = self._open, self._tmp
        self.close_shard()
        self._sheets.close()
        os.chmod(tmp, 0o666 & ~files._UMASK)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        final = self._final(number)
        os.replace(tmp, final)
        self._open = self._tmp = None
        files.write_json(self.run_dir / stats_name(number), {
            "shard": final.name, "format": self.format, "count": self._written,
            "flagged": self._flagged, "bytes": final.stat().st_size,
            "sha256": digest.hexdigest(), "seconds": round(time.perf_counter() - self._started, 3),
        })
