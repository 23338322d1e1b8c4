"""Output format ``webdataset``: tar shards written with webdataset's ``TarWriter``.

Each image is one sample of key ``00000042`` (its number): ``00000042.png`` (the generated image),
``00000042.preprocessed.npy`` (the array the model saw), ``00000042.logits.npy`` and
``00000042.json`` (its manifest row). ``webdataset.WebDataset("DIR/{00000..00009}.tar")`` and
``datasets.load_dataset("webdataset", data_files="DIR/*.tar")`` read them.

``datasets`` takes the type of each JSON field from a shard's first five samples, so a field
that is sometimes empty is written as ``""`` rather than ``null`` (:data:`TEXT_FIELDS`): a flagged
image after five good ones would otherwise fail to load.
"""

from __future__ import annotations

import json

from ailusion.rundir.files import json_safe
from ailusion.rundir.shards import ShardWriter, sample_key


#: Row fields that hold text or nothing: ``""`` for nothing in the JSON (see the module doc).
TEXT_FIELDS = ("flagged", "label", "prediction")


class WebDatasetWriter(ShardWriter):
    suffix = ".tar"
    kind = "tar shard"

    def names(self, index: int) -> dict[str, str]:
        return {}

    def start(self, requests, info, done) -> None:
        from webdataset import TarWriter  # slow to import (it imports torch): not in the factory

        self._tar_writer = TarWriter
        super().start(requests, info, done)

    def open_shard(self, path, info) -> None:
        self._file = open(path, "wb")
        # A fixed mtime (and owner): the same images give the same bytes, run after run.
        self._tar = self._tar_writer(self._file, encoder=False, mtime=0, user="ailusion",
                                         group="ailusion")

    def write_sample(self, sample) -> None:
        row = {k: "" if v is None and k in TEXT_FIELDS else v
               for k, v in sample.row.items() if k != "logits"}
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
