"""Where a run dir's preprocessed arrays are, and how any rows of them are read.

An ``imagefolder`` run dir holds one (C, H, W) array per image, in the order of
``preprocessed_index.json``: in ``preprocessed.npy``, or in a big run in chunks
``preprocessed/00000.npy``, ``preprocessed/00001.npy``, … of ``output.shard_size`` rows, each
numbered by the images it holds over the whole run (chunk ``k`` holds images
``k * shard_size + 1`` … ``(k + 1) * shard_size``), so a job of a sharded run holds only its own
chunks and a merged dir holds them all. Everything that reads a run's arrays (``ailusion
merge``, ``ailusion train``) goes through :func:`array_files` and :class:`Arrays`, which read
only the rows asked for.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import numpy as np

from . import records

SINGLE = "preprocessed.npy"
CHUNKS = "preprocessed"
_CHUNK = re.compile(r"[0-9]{5,}\.npy")
#: How many array files :meth:`Arrays.read` keeps mapped at once (each holds a file descriptor).
MAPPED_FILES = 16


def chunk_name(number: int) -> str:
    """The name, in its run dir, of array chunk ``number``."""
    return f"{CHUNKS}/{number:05d}.npy"


def array_files(run_dir: Path) -> list[str]:
    """The names (relative to ``run_dir``) of its array files in row order: ``preprocessed.npy``,
    or its chunks by number; ``[]`` when it holds none. Each is checked to stay inside the dir."""
    run_dir = Path(run_dir)
    if (run_dir / SINGLE).is_file() or (run_dir / SINGLE).is_symlink():
        names = [SINGLE]
    elif (run_dir / CHUNKS).is_dir():
        found = [p.name for p in (run_dir / CHUNKS).iterdir() if _CHUNK.fullmatch(p.name)]
        names = [f"{CHUNKS}/{name}" for name in sorted(found, key=lambda n: int(n[:-4]))]
    else:
        names = []
    for name in names:  # a symlink out of the dir is refused
        records.safe_path(run_dir, name, run_dir, "its file")
    return names


def npy_layout(path: Path, recovery: str = records.RECOVER_RUN):
    """``(shape, dtype, data offset)`` of the C-ordered (N, C, H, W) float ``.npy`` file ``path``,
    read from its header and checked against its size (a header declaring more rows than the
    file holds is refused, never allocated); else :func:`records.corrupt`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise records.corrupt(path, f"not a readable .npy array: {exc}", recovery) from None
    if fortran or len(shape) != 4 or dtype.kind != "f":
        raise records.corrupt(path, f"expected a (N, C, H, W) float array, got {shape} "
                              f"{dtype}", recovery)
    if path.stat().st_size < offset + int(np.prod(shape)) * dtype.itemsize:
        raise records.corrupt(path, f"truncated: shorter than its {shape[0]} rows", recovery)
    return tuple(int(n) for n in shape), dtype, offset


class Arrays:
    """The rows of a run dir's array files, read as one (N, C, H, W) array without loading it."""

    def __init__(self, run_dir: Path, recovery: str = records.RECOVER_RUN):
        self.run_dir = Path(run_dir)
        self.names = array_files(self.run_dir)
        self._layouts = [npy_layout(self.run_dir / name, recovery) for name in self.names]
        shapes = {shape[1:] for shape, _, _ in self._layouts}
        dtypes = {dtype for _, dtype, _ in self._layouts}
        if len(shapes) > 1 or len(dtypes) > 1:
            raise records.corrupt(self.run_dir / CHUNKS, "its chunks hold arrays of different "
                                  f"shapes or types ({sorted(shapes)})", recovery)
        self.row_shape = shapes.pop() if shapes else ()
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self._starts = np.cumsum([0] + [shape[0] for shape, _, _ in self._layouts])
        self._row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        # Each file as it was checked (device, inode, size, mtime): a file changed since is refused.
        self._paths = [self.run_dir / name for name in self.names]
        self._identities = [_identity(os.stat(path)) for path in self._paths]
        self._mapped: dict[int, np.ndarray] = {}  # file → its rows, least recently read first

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    def spans(self) -> list[tuple[str, range]]:
        """``(file name, the positions of its rows)`` of each array file, in order."""
        return [(name, range(int(a), int(b)))
                for name, a, b in zip(self.names, self._starts[:-1], self._starts[1:])]

    def read(self, positions, dtype=np.float32) -> np.ndarray:
        """The rows at ``positions`` (in that order) as one ``dtype`` array.

        Each file is read through a read-only memory map (its pages are the OS's file cache,
        shared and given back under memory pressure), at most :data:`MAPPED_FILES` at a time;
        a file changed or cut short since it was checked is refused, never read past its end."""
        positions = np.asarray(positions, np.int64)
        file_of = np.searchsorted(self._starts, positions, side="right") - 1
        outside = (file_of < 0) | (file_of >= len(self.names))
        if outside.any():
            raise IndexError(f"no array row {positions[outside][0]}")
        files = np.unique(file_of)
        if len(files) == 1:  # every row from one file: index it directly, no second copy
            k = int(files[0])
            return self._rows_of(k)[positions - self._starts[k]].astype(dtype, copy=False)
        out = np.empty((len(positions), *self.row_shape), dtype)
        for k in files:
            at = np.flatnonzero(file_of == k)
            out[at] = self._rows_of(int(k))[positions[at] - self._starts[k]]
        return out

    def _rows_of(self, k: int) -> np.ndarray:
        """File ``k``'s rows, (n, C, H, W), mapped; checked against the file as it is now."""
        path, (shape, _, offset) = self._paths[k], self._layouts[k]
        try:
            now = os.stat(path)
        except OSError as exc:
            raise records.corrupt(path, f"gone while read: {exc.strerror}") from None
        if now.st_size < offset + shape[0] * self._row_bytes:
            raise records.corrupt(path, "truncated while read")
        if _identity(now) != self._identities[k]:
            raise records.corrupt(path, "changed while read")
        rows = self._mapped.pop(k, None)
        if rows is None:
            if len(self._mapped) >= MAPPED_FILES:  # unmap the least recently read
                del self._mapped[next(iter(self._mapped))]
            rows = _map_rows(path, shape, self.dtype, offset)
        self._mapped[k] = rows  # now the most recently read
        return rows


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _map_rows(path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> np.ndarray:
    if shape[0] == 0:
        return np.empty(shape, dtype)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(mapped, dtype, int(np.prod(shape)), offset).reshape(shape)
