"""Labelled data for training: one reader interface over data dirs, and the validation split.

A reader opens one data dir and tells its class list, the preprocessing it was made with (the
preprocessor's config node, as recorded when the data was made), the input shape, its length,
each image's number and class id, and reads any batch of images as a (N, C, H, W) float32 array
with their (N,) int64 class ids. It reads only the rows asked for: memory stays flat however
large the data (a run dir's arrays are read through a memory map, as fast as arrays in memory
once the OS caches the file). :class:`RunDirReader` reads a run dir (or a merged one) of the
``imagefolder`` layout; other formats plug in through the ``register_data_readers`` hook.

:func:`open_data` opens one or more dirs as one :class:`Data`, refusing dirs made with other
class lists or preprocessing, and :func:`validation_mask` splits by image number alone, so an
image lands on the same side whatever the sharding, merging or order of the dirs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..rundir import arrays, manifest, records
from ..rundir.claim import RUN_FILE
from ..errors import AilusionError
from ..labels import read_classes

LABELLED_HOW = (
    "make labelled data first: a run with classes=[cat,dog] (or generator=folder over class "
    "subfolders DIR/cat/*.png, DIR/dog/*.png), then train on its run dir"
)
#: Preprocessor settings that change how fast it runs, not what it makes.
NOT_PREPROCESSING = ("num_workers",)


@runtime_checkable
class DataReader(Protocol):
    """One labelled data dir, read a batch at a time."""

    path: Path
    classes: list[str]
    preprocessing: dict  # the preprocessor's config node the data was made with
    input_shape: tuple[int, int, int]
    numbers: np.ndarray  # (len,) int64: each image's number in its run
    labels: np.ndarray  # (len,) int64: each image's class id

    def __len__(self) -> int: ...

    def batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x (N, C, H, W) float32, y (N,) int64) for the images at ``positions``, in order."""


class RunDirReader:
    """A finished run dir: ``metadata.jsonl`` rows with ``label``/``label_id``, ``classes.json``,
    and the arrays (``preprocessed.npy``, or its chunks: :mod:`ailusion.rundir.arrays`) in the
    order of ``preprocessed_index.json``. Flagged images (black, NSFW, NaN) are left out."""

    NEEDED = (RUN_FILE, manifest.MANIFEST, "preprocessed_index.json")

    @classmethod
    def can_read(cls, path: Path) -> bool:
        return (Path(path) / manifest.MANIFEST).is_file()

    def __init__(self, path: Path):
        self.path = path = Path(path)
        missing = [name for name in self.NEEDED if not (path / name).is_file()]
        if missing:
            raise AilusionError(f"data: {path} is not a finished ailusion run dir (no {missing[0]})")
        classes = read_classes(path)
        if classes is None:
            raise AilusionError(f"data: {path} has no labels (no classes.json); {LABELLED_HOW}")
        self.classes = list(classes)
        self.preprocessing = _recorded_preprocessor(path)
        index = path / "preprocessed_index.json"
        order = records.check_index(records.read_json(index), index, path)
        rows = {row["file_name"]: row for row in manifest.read_manifest(path, strict=True).values()}
        self._arrays = arrays.Arrays(path)
        if not self._arrays.names:
            raise AilusionError(f"data: {path} is not a finished ailusion run dir (no "
                                f"{arrays.SINGLE} nor {arrays.CHUNKS}/)")
        if len(order) != len(self._arrays):
            raise AilusionError(f"data: {path}: preprocessed_index.json and "
                                f"{', '.join(self._arrays.names)} disagree")
        self.input_shape = self._arrays.row_shape
        keep, numbers, labels = [], [], []
        for position, name in enumerate(order):
            row = rows.get(name)
            if row is None:
                raise AilusionError(f"data: {path}: {name} has no row in {manifest.MANIFEST}")
            if row.get("flagged"):
                continue
            keep.append(position)
            numbers.append(int(row["index"]))
            labels.append(self._label_id(row, name))
        self._rows = np.array(keep, np.int64)  # row in the arrays of each image
        self.numbers, self.labels = np.array(numbers, np.int64), np.array(labels, np.int64)

    def _label_id(self, row: dict, name: str) -> int:
        label, label_id = row.get("label"), row.get("label_id")
        if not isinstance(label_id, int) or not 0 <= label_id < len(self.classes):
            raise AilusionError(
                f"data: {self.path}: {name} has no valid label_id (classes.json lists "
                f"{len(self.classes)} classes); {LABELLED_HOW}"
            )
        if label != self.classes[label_id]:
            raise AilusionError(
                f"data: {self.path}: {name} has label {label!r} but label_id {label_id}, "
                f"which is {self.classes[label_id]!r}"
            )
        return label_id

    def __len__(self) -> int:
        return len(self._rows)

    def batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, np.int64)
        return self._arrays.read(self._rows[positions]), self.labels[positions]


def _recorded_preprocessor(path: Path) -> dict:
    file = path / RUN_FILE
    record = records.check_run_record(records.read_json(file), file)
    node = record["config"].get("preprocessor")
    if not isinstance(node, dict) or not isinstance(node.get("plugin"), str):
        raise AilusionError(f"data: {path / RUN_FILE} does not record its preprocessor")
    return node


def readers(pm=None) -> list[type]:
    """The reader classes to try, plugins' first (``register_data_readers``), then the run dir's."""
    found = []
    if pm is not None and hasattr(pm.hook, "register_data_readers"):
        for result in pm.hook.register_data_readers():
            found.extend((result or {}).values())
    return [*found, RunDirReader]


def open_reader(path, pm=None) -> DataReader:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise AilusionError(f"data: no such data dir: {path}")
    for reader in readers(pm):
        if reader.can_read(path):
            return reader(path)
    raise AilusionError(f"data: {path} holds no dataset ailusion can read (no {manifest.MANIFEST})")


class Data:
    """One or more data dirs made alike, read as one: positions run over the dirs in turn."""

    def __init__(self, parts: Sequence[DataReader]):
        first = parts[0]
        for part in parts[1:]:
            if part.classes != first.classes:
                raise AilusionError(
                    f"data: {part.path} has classes {part.classes} but {first.path} has "
                    f"{first.classes}: train on data dirs made with one class list"
                )
            key = _difference(first.preprocessing, part.preprocessing)
            if key:
                value = lambda p: json.dumps(p.preprocessing.get(key))  # noqa: E731
                raise AilusionError(
                    f"data: {part.path} was made with preprocessor.{key}={value(part)}, "
                    f"{first.path} with {value(first)}: train on data dirs made with the same "
                    "preprocessing"
                )
        self.parts, self.classes = list(parts), list(first.classes)
        self.preprocessing, self.input_shape = dict(first.preprocessing), first.input_shape
        self.paths = [p.path for p in parts]
        self.numbers = np.concatenate([p.numbers for p in parts])
        self.labels = np.concatenate([p.labels for p in parts])
        self._starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def batch(self, positions) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"positions outside 0…{len(self) - 1}")
        if len(self.parts) == 1:  # no second copy
            return self.parts[0].batch(positions)
        x = np.empty((len(positions), *self.input_shape), np.float32)
        y = np.empty(len(positions), np.int64)
        part_of = np.searchsorted(self._starts, positions, side="right") - 1
        for k in np.unique(part_of):
            mask = part_of == k
            x[mask], y[mask] = self.parts[k].batch(positions[mask] - self._starts[k])
        return x, y


def _difference(a: dict, b: dict) -> str | None:
    """The first preprocessing setting whose value differs between ``a`` and ``b``, or None."""
    for key in sorted(set(a) | set(b)):
        if key not in NOT_PREPROCESSING and a.get(key) != b.get(key):
            return key
    return None


def open_data(paths, pm=None) -> Data:
    """Open the data dir(s) ``paths`` (a path or a list) as one :class:`Data`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths or [])
    if not paths:
        raise AilusionError(f"data: give the labelled data to train on: data=DIR or "
                            f"data=[DIR1,DIR2]; {LABELLED_HOW}")
    return Data([open_reader(p, pm) for p in paths])


def validation_mask(numbers: np.ndarray, fraction: float) -> np.ndarray:
    """True for the images that validate: a hash of each image's number (splitmix64) below
    ``fraction`` of its range, so the split depends on the numbers alone."""
    with np.errstate(over="ignore"):
        z = np.asarray(numbers, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction
