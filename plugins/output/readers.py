"""``ailusion train`` readers for the shard formats (``register_data_readers``).

Each reads a labelled run dir (or a merged one) of ``webdataset`` or ``parquet`` shards behind
the training reader interface (:class:`ailusion.training.data.DataReader`): opening it reads only
the small fields (image number, label, flagged) of every shard, and a batch reads only the arrays
it asks for (from their place in the tar, or the Parquet row groups holding them), so memory stays
flat however large the data. Flagged images are left out, as the run dir reader leaves them out.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from ailusion.errors import AilusionError
from ailusion.rundir import records, shards
from ailusion.training.data import LABELLED_HOW, _recorded_preprocessor, read_classes


class ShardReader:
    """What both formats share: the dir's shards, classes, preprocessing and labels."""

    format = ""
    suffix = ""

    @classmethod
    def can_read(cls, path: Path) -> bool:
        info = Path(path) / shards.INFO
        try:
            return records.read_json(info).get("format") == cls.format
        except (AilusionError, AttributeError):
            return False

    def __init__(self, path: Path):
        self.path = path = Path(path)
        classes = read_classes(path)
        if classes is None:
            raise AilusionError(f"data: {path} has no labels (no classes.json); {LABELLED_HOW}")
        self.classes = list(classes)
        self.preprocessing = _recorded_preprocessor(path)
        info = records.read_json(path / shards.INFO)
        self.input_shape = tuple(int(n) for n in info["preprocessed"]["shape"])
        self.shard_paths = sorted(path.glob("[0-9]" * 5 + "*" + self.suffix))
        numbers, labels, self._where = [], [], []  # (shard, place) of each image kept
        for k, shard in enumerate(self.shard_paths):
            for place, row in self._rows(shard):
                if row.get("flagged"):
                    continue
                label_id = row.get("label_id")
                if not isinstance(label_id, int) or not 0 <= label_id < len(self.classes):
                    raise AilusionError(f"data: {shard}: image {row.get('index')} has no valid "
                                        f"label_id; {LABELLED_HOW}")
                numbers.append(int(row["index"]))
                labels.append(label_id)
                self._where.append((k, place))
        self.numbers, self.labels = np.array(numbers, np.int64), np.array(labels, np.int64)

    def __len__(self) -> int:
        return len(self.numbers)

    def batch(self, positions) -> tuple[np.ndarray, np.ndarray]:
        positions = np.asarray(positions, np.int64)
        out = np.empty((len(positions), *self.input_shape), np.float32)
        for i in np.argsort(positions, kind="stable"):  # in file order
            k, place = self._where[positions[i]]
            out[i] = self._array(k, place)
        return out, self.labels[positions]


class WebDatasetReader(ShardReader):
    """Tar shards: each sample's ``.json`` read at opening, its ``.preprocessed.npy`` at need."""

    format, suffix = "webdataset", ".tar"

    def _rows(self, shard: Path):
        arrays, rows = {}, {}
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, kind = member.name.partition(".")
                if kind == "preprocessed.npy":
                    arrays[key] = (member.offset_data, member.size)
                elif kind == "json":
                    rows[key] = json.loads(tar.extractfile(member).read())
        for key in sorted(rows):
            if key not in arrays:
                raise AilusionError(f"data: {shard}: sample {key} has no preprocessed.npy")
            yield arrays[key], rows[key]

    def _array(self, k: int, place) -> np.ndarray:
        offset, size = place
        with open(self.shard_paths[k], "rb") as f:
            f.seek(offset)
            return np.load(io.BytesIO(f.read(size)), allow_pickle=False)


class ParquetReader(ShardReader):
    """Parquet shards: the small columns read at opening, ``preprocessed`` by row group."""

    format, suffix = "parquet", ".parquet"

    def _rows(self, shard: Path):
        import pyarrow.parquet as pq

        file = pq.ParquetFile(shard)
        columns = [c for c in ("index", "label_id", "flagged") if c in file.schema_arrow.names]
        for group in range(file.num_row_groups):
            table = file.read_row_group(group, columns=columns).to_pylist()
            for row_in_group, row in enumerate(table):
                yield (group, row_in_group), row

    def _array(self, k: int, place) -> np.ndarray:
        import pyarrow.parquet as pq

        group, row = place
        if getattr(self, "_cached", (None,))[0] != (k, group):
            column = pq.ParquetFile(self.shard_paths[k]).read_row_group(
                group, columns=["preprocessed"]).column(0)
            flat = column.combine_chunks().flatten().flatten().flatten().to_numpy()
            self._cached = ((k, group), flat.reshape(-1, *self.input_shape))
        return self._cached[1][row]
