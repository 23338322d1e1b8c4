"""Output format ``parquet``: Parquet shards written with pyarrow.

One row per image: ``image`` (the generated PNG's bytes, which ``datasets`` reads as an ``Image``
feature), ``preprocessed`` (the (C, H, W) array as nested fixed-size lists), ``logits``, and the
fields of its manifest row as columns. ``datasets.load_dataset("parquet", data_files=
"DIR/*.parquet")`` and ``pyarrow.parquet.read_table`` read them. Rows go out in row groups of
:data:`ROW_GROUP` images, so a shard never sits whole in memory.
"""

from __future__ import annotations

import json

import numpy as np

from ailusion.rundir.shards import ShardWriter

ROW_GROUP = 64
#: Arrow types of the manifest fields every run has (other fields take their values' types).
KNOWN = {"index": "int64", "seed": "int64", "label_id": "int64", "probability": "float64"}
_HF_FEATURES = {"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})}


class ParquetWriter(ShardWriter):
    suffix = ".parquet"
    kind = "Parquet shard"

    def names(self, index: int) -> dict[str, str]:
        return {}

    def open_shard(self, path, info) -> None:
        self._path, self._writer, self._group = path, None, []
        self._shape, self._dtype = tuple(info.preprocessed_shape), info.preprocessed_dtype

    def write_sample(self, sample) -> None:
        self._group.append(sample)
        if len(self._group) == ROW_GROUP:
            self._flush()

    def close_shard(self) -> None:
        if self._group:
            self._flush()
        if self._writer is not None:
            self._writer.close()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        group, self._group = self._group, []
        table = self._table(pa, group)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._path, self._schema, compression="zstd")
        self._writer.write_table(table)

    def _table(self, pa, group):
        c, h, w = self._shape
        flat = pa.array(np.stack([s.array for s in group]).reshape(-1))
        preprocessed = pa.FixedSizeListArray.from_arrays(
            pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, w), h), c)
        image = pa.StructArray.from_arrays(
            [pa.array([s.encoded["png"] for s in group], pa.binary()),
             pa.array([None] * len(group), pa.string())], ["bytes", "path"])
        logits = pa.FixedSizeListArray.from_arrays(
            pa.array(np.stack([s.logits for s in group]).reshape(-1).astype(np.float32)),
            len(group[0].logits))
        columns = {"image": image, "preprocessed": preprocessed, "logits": logits}
        if self._writer is None:  # the shard's first row group decides its columns
            keys = sorted({k for s in group for k in s.row} - set(columns))
            types = {k: _type(pa, k, [s.row.get(k) for s in group]) for k in keys}
        else:
            types = {f.name: f.type for f in self._schema if f.name not in columns}
        for key, kind in types.items():
            columns[key] = pa.array([s.row.get(key) for s in group], kind)
        return pa.table(columns).replace_schema_metadata(_HF_FEATURES)


def _type(pa, key: str, values):
    if key in KNOWN:
        return getattr(pa, KNOWN[key])()
    sample = next((v for v in values if v is not None), None)
    if sample is None or isinstance(sample, str):
        return pa.string()  # flagged, label, negative_prompt, …: strings or nothing
    return pa.infer_type([sample])
