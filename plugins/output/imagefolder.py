"""Output format ``imagefolder``: a PNG per image and ``metadata.jsonl``, as ``datasets`` reads.

The run dir holds, per image, ``generated_image_N.png`` and ``preprocessed_image_N.png`` (the
array as the model saw it, as an image), one manifest row each in ``metadata.jsonl``; the
preprocessed arrays in ``preprocessed.npy`` (rows in the order of ``preprocessed_index.json``),
the logits in ``predictions.npy`` and ``predictions.json``, and the contact sheets. A run of
more than ``output.subdirs_above`` planned images puts its PNGs into subdirs ``00000/``,
``00001/``, … of at most a thousand files and its arrays into chunks ``preprocessed/00000.npy``, …
of ``output.shard_size`` rows, named by the images they hold over the whole run (chunk ``k``
holds images ``k * shard_size + 1`` …), so each job of a sharded run writes whole chunks of its
own and ``ailusion merge`` links them. A rerun keeps every complete image and rebuilds the
arrays.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np

from ailusion import png
from ailusion.rundir import arrays, files, manifest
from ailusion.rundir.records import FILE_KEYS
from ailusion.rundir.sheets import ContactSheets
from ailusion.rundir.shards import INFO, block_counts, shard_of


#: What ``predictions.json`` gives of each image, in the order of the arrays' rows.
PREDICTION_KEYS = ("file_name", "index", "prediction", "probability", "logits")


class ImageFolderWriter:
    """Writes the ``imagefolder`` layout (module docstring)."""

    def __init__(self, config, context):
        self.run_dir = Path(context.run_dir)
        self.shard_size, self.subdirs_above = int(config.shard_size), int(config.subdirs_above)
        self.png = dict(
            compress_level=int(context.config.get("png_compress_level", 6)),
            strategy=str(context.config.get("png_strategy", "rle")),
            encoder=png.resolve(str(context.config.get("png_encoder", "pillow"))),
        )
        self.subdirs = False
        self.rows: dict[int, dict] = {}
        self.sha256: dict[str, str] = {}  # of the arrays, once written (the run's record keeps it)
        self.order: list[str] = []  # the file name of each row of the arrays
        self.logits: list[np.ndarray] = []
        self._array, self._array_tmp, self._rows_in_array = None, None, 0
        self._chunk = 0
        self._chunk_rows: dict[int, int] = {}  # this job's images in each chunk it writes
        self._manifest = self._predictions = None
        self.sheets = None

    def names(self, index: int) -> dict[str, str]:
        return {"file_name": manifest.generated_name(index, self.subdirs),
                "preprocessed_file_name": manifest.preprocessed_name(index, self.subdirs)}

    def complete(self, requests):
        return manifest.complete_rows(self.run_dir, requests), set()

    def start(self, requests, info, done) -> None:
        self.info, self.total = info, len(requests)
        # By the run's planned count, not this job's: every job (and the merged dir) names its
        # files and chunks as the unsharded run does.
        self.subdirs = info.planned > self.subdirs_above
        if self.subdirs:
            self._chunk_rows = block_counts(requests, self.shard_size)
        manifest.write_manifest(self.run_dir, done)
        files.write_json(self.run_dir / INFO, info.to_json())
        self._manifest = manifest.ManifestWriter(self.run_dir, done)
        # predictions.json is written as rows are added: nothing of it is left for the end.
        self._predictions = files.StreamedFile(self.run_dir / "predictions.json")
        self._predictions.write(
            f'{{"labels": {json.dumps(list(info.labels))}, "images": [\n'.encode("utf-8"))
        self.sheets = ContactSheets(self.run_dir, self.total, files.write_bytes)

    def encode(self, sample) -> None:
        row = sample.row
        if self.subdirs:
            (self.run_dir / row["file_name"]).parent.mkdir(exist_ok=True)
        text = {k: v for k, v in row.items() if k in files.PNG_TEXT_KEYS}
        sample.encoded[FILE_KEYS["file_name"]] = files.save_png(
            sample.image, self.run_dir / row["file_name"], text=text, **self.png)

    def encode_processed(self, sample) -> None:
        name = sample.row["preprocessed_file_name"]
        if self.subdirs:
            (self.run_dir / name).parent.mkdir(exist_ok=True)
        sample.encoded[FILE_KEYS["preprocessed_file_name"]] = files.save_png(
            sample.view, self.run_dir / name, **self.png)

    def add(self, sample) -> None:
        if self.subdirs and self._array is None:
            self._chunk = shard_of(sample.index, self.shard_size)
        try:
            self._append_array(sample.array)
        except OSError as exc:  # named as the file it becomes, not its temporary name
            raise files.write_error(self._array_path(), exc) from exc
        self.order.append(sample.row["file_name"])
        self.logits.append(np.asarray(sample.logits, np.float32))
        self.rows[sample.index] = sample.row
        if not sample.kept:  # a kept image's row is in the manifest already
            sample.row.update(sample.encoded)  # the sha256 of each file, as written
            self._manifest.append(sample.row)
        prediction = {k: sample.row.get(k) for k in PREDICTION_KEYS}
        separator = ",\n" if len(self.order) > 1 else ""
        self._predictions.write(
            (separator + json.dumps(files.json_safe(prediction), allow_nan=False)).encode())
        self.sheets.add(sample.row, sample.image, sample.view)

    def _append_array(self, array: np.ndarray) -> None:
        # Rows arrive in order, so the .npy is appended to with plain writes: a memmap would keep
        # every written page in this process's resident memory until the end.
        if self._array is None:
            rows = self._chunk_rows[self._chunk] if self.subdirs else self.total
            self._array_tmp = self._array_path().with_name(f".{self._array_path().name}.tmp")
            self._array_tmp.parent.mkdir(exist_ok=True)
            self._array_tmp.unlink(missing_ok=True)  # a killed run's (claim.start drops the top's)
            self._array = _Hashing(open(self._array_tmp, "xb"))  # never through a link
            np.lib.format.write_array_header_2_0(self._array, {
                "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                "shape": (rows, *array.shape),
            })
            self._array_rows = rows
        self._array.write(memoryview(np.ascontiguousarray(array)).cast("B"))  # no copy
        self._rows_in_array += 1
        if self._rows_in_array == self._array_rows and self.subdirs:
            self._close_array()

    def _array_path(self) -> Path:
        if self.subdirs:
            return self.run_dir / arrays.chunk_name(self._chunk)
        return self.run_dir / arrays.SINGLE

    def _close_array(self) -> None:
        try:
            self._array.close()
        except OSError as exc:
            raise files.write_error(self._array_path(), exc) from exc
        os.replace(self._array_tmp, self._array_path())
        self.sha256[str(self._array_path().relative_to(self.run_dir))] = self._array.hexdigest()
        self._array, self._rows_in_array = None, 0

    def finish(self) -> None:
        self.sheets.close()
        if self._array is not None:
            self._close_array()
        width = len(self.info.labels)
        logits = np.stack(self.logits) if self.logits else np.zeros((0, width), np.float32)
        encoded = io.BytesIO()
        np.save(encoded, logits)
        self.sha256["predictions.npy"] = files.write_bytes(self.run_dir / "predictions.npy",
                                                           encoded.getvalue())
        files.write_json(self.run_dir / "preprocessed_index.json", self.order)
        self._predictions.write(b"\n]}\n")
        self._predictions.close()
        self._manifest.finalize(self.rows)

    def abort(self) -> None:
        if self._manifest is not None:
            self._manifest.close()
        if self._predictions is not None:
            self._predictions.discard()
        if self._array is not None:
            try:
                self._array.close()
            except OSError:  # a full disk cannot take the buffered rest: it is dropped anyway
                pass
            self._array_tmp.unlink(missing_ok=True)


class _Hashing:
    """A binary file that keeps the sha256 of what is written to it (as it is written, so the
    array's digest costs no second read)."""

    def __init__(self, file):
        import hashlib

        self._file, self._sha = file, hashlib.sha256()

    def write(self, data) -> int:
        self._sha.update(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
