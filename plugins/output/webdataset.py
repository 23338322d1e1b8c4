"""Output format ``webdataset``: tar shards written with webdataset's ``TarWriter``.

Each image is one sample of key ``00000042`` (its number): ``00000042.png`` (the generated image),
``00000042.preprocessed.npy`` (the array the model saw), ``00000042.logits.npy`` and
``00000042.json`` (its manifest row). ``webdataset.WebDataset("DIR/{00000..00009}.tar")`` and
``datasets.load_dataset("webdataset", data_files="DIR/*.tar")`` read them.

A value a row does not have (``flagged`` of a good image, ``prediction`` and ``probability``
where the logits are NaN, ``negative_prompt`` where there is none) is JSON ``null``, as in the
other formats. ``datasets`` takes the type of each field from a shard's first five samples, so a
field null in those and set later would not load: the dir's ``dataset_info.json`` holds the
features of every field (:data:`ROW_TYPES`, and the generator's own fields by their values), and
``load_dataset("webdataset", data_files=…, features=DatasetInfo.from_directory(DIR).features)``
reads every column whatever the first samples hold.
"""

from __future__ import annotations

import json

from ailusion.rundir import files
from ailusion.rundir.files import json_safe
from ailusion.rundir.shards import ShardWriter, sample_key

#: The ``datasets`` value type of the row fields ailusion writes itself (any may be null; a
#: labelled run's rows have ``label`` and ``label_id``, others have neither).
ROW_TYPES = {"index": "int64", "prompt": "string", "negative_prompt": "string", "seed": "int64",
             "source": "string", "label": "string", "label_id": "int64", "flagged": "string",
             "prediction": "string", "probability": "float64"}
INFO = "dataset_info.json"


class WebDatasetWriter(ShardWriter):
    suffix = ".tar"
    kind = "tar shard"

    def names(self, index: int) -> dict[str, str]:
        return {}

    def start(self, requests, info, done) -> None:
        from webdataset import TarWriter  # slow to import (it imports torch): not in the factory

        self._tar_writer = TarWriter
        self._types: dict[str, dict | None] = {}
        super().start(requests, info, done)

    def open_shard(self, path, info) -> None:
        self._file = open(path, "wb")
        # A fixed mtime (and owner): the same images give the same bytes, run after run.
        self._tar = self._tar_writer(self._file, encoder=False, mtime=0, user="ailusion",
                                         group="ailusion")

    def write_sample(self, sample) -> None:
        row = {k: v for k, v in sample.row.items() if k != "logits"}
        for key, value in row.items():  # a generator's own field is typed by its first value
            if self._types.get(key) is None:
                self._types[key] = (_value(ROW_TYPES[key]) if key in ROW_TYPES
                                    else None if value is None else _feature(value))
        self._tar.write({
            "__key__": sample_key(sample.index),
            "png": sample.encoded["png"],
            "preprocessed.npy": sample.encoded["preprocessed.npy"],
            "logits.npy": sample.encoded["logits.npy"],
            "json": json.dumps(json_safe(row), sort_keys=True).encode("utf-8"),
        })

    def close_shard(self) -> None:
        self._tar.close()
        self._file.close()

    def finish(self) -> None:
        super().finish()
        if self._types or not (self.run_dir / INFO).exists():  # a rerun that wrote no shard
            # keeps the file its first run wrote
            files.write_json(self.run_dir / INFO, {"features": self.features()})

    def features(self) -> dict:
        """The ``datasets`` features of a sample (``datasets.Features.from_dict`` reads them)."""
        dtype = {"float32": "float32", "float16": "float16", "float64": "float64"}.get(
            self.info.preprocessed_dtype, "float32")
        array = _value(dtype)
        for _ in range(3):
            array = {"feature": array, "_type": "List"}
        row = {key: kind or _value("null") for key, kind in sorted(self._types.items())}
        return {"png": {"_type": "Image"}, "preprocessed.npy": array,
                "logits.npy": {"feature": _value("float32"), "_type": "List"},
                "json": row, "__key__": _value("string"), "__url__": _value("string")}


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def _feature(value):
    """The ``datasets`` feature of a JSON value (a generator's field)."""
    if isinstance(value, bool):
        return _value("bool")
    if isinstance(value, int):
        return _value("int64")
    if isinstance(value, float):
        return _value("float64")
    if isinstance(value, list):
        inner = next((v for v in value if v is not None), None)
        return {"feature": _feature(inner) if inner is not None else _value("null"),
                "_type": "List"}
    if isinstance(value, dict):
        return {k: _feature(v) if v is not None else _value("null") for k, v in value.items()}
    return _value("string")
