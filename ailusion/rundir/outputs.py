"""Everything a run writes into its run dir, off the generating thread.

:class:`Outputs` encodes PNGs on a thread pool (with a bounded number in flight), fills the
arrays on disk row by row, draws the contact sheets, and appends a manifest row only once all of
its image's files are complete.
"""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import AilusionError
from ..threads import yield_to_generation
from . import files, manifest
from .records import FILE_KEYS
from .sheets import ContactSheets


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Outputs:
    """Everything a run writes into its run dir."""

    def __init__(self, run_dir: Path, total: int, preprocessor, model, compress_level: int = 6,
                 strategy: str = "rle", encoder: str = "pillow",
                 class_ids: dict[str, int] | None = None):
        self.run_dir, self.total = Path(run_dir), total
        self.class_ids = class_ids  # {class: label_id} in a labelled run, else None
        self.preprocessor, self.labels = preprocessor, list(model.labels)
        self.png = dict(compress_level=compress_level, strategy=strategy, encoder=encoder)
        self.logits = np.zeros((total, len(self.labels)), dtype=np.float32)
        self.rows: dict[int, dict] = {}
        self.order: list[int] = []  # image index of each row of the arrays
        self._array_file = None  # preprocessed.npy, written row by row (see add_batch)
        self.sha256: dict[str, str] = {}  # of the arrays, once written (the run's record keeps it)
        self._array_tmp = self.run_dir / ".preprocessed.npy.tmp"
        self._manifest = manifest.ManifestWriter(self.run_dir)
        workers = max(2, os.cpu_count() or 2)
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="ailusion-io", initializer=yield_to_generation
        )
        self._in_flight = threading.BoundedSemaphore(4 * workers)
        self._pending: deque[tuple[dict, list[Future]]] = deque()
        self._begun: dict[int, tuple[dict, Future]] = {}  # by image index: see begin()
        self.hook = None  # set by the Consumer: called with each complete row
        self._writes: list[Future] = []
        self.sheets = ContactSheets(self.run_dir, total, self._save_sheet)

    def write(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the writing threads; :meth:`finish` waits for it and re-raises."""
        self._writes.append(self._submit(fn, *args))

    def _save_sheet(self, path: Path, data: bytes) -> None:
        self.write(files.write_bytes, path, data)

    def _submit(self, fn, *args, **kwargs) -> Future:
        self._in_flight.acquire()
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._in_flight.release())
        return future

    def begin(self, request, generated) -> None:
        """Start writing a generated image as soon as it arrives: its PNG and text chunks need
        nothing its batch computes, so it is encoded while the batch fills, and the last batch
        of a run leaves less to do after the last image."""
        row = self._new_row(request, generated)
        text = {k: v for k, v in row.items() if k in _PNG_TEXT_KEYS}
        self._begun[request.index] = row, self._submit(
            files.save_png, generated.image, self.run_dir / row["file_name"], text=text,
            **self.png,
        )

    def add_batch(self, batch, images, arrays: np.ndarray, logits: np.ndarray) -> None:
        """Record one processed batch of ``(request, generated, previous_row)`` triples, with
        each one's image (generated now, or read back for a complete one)."""
        try:
            self._write_arrays(arrays)
        except OSError as exc:  # named as the file it becomes, not its temporary name
            raise files.write_error(self.run_dir / "preprocessed.npy", exc) from exc
        probabilities = softmax(logits.astype(np.float64))
        for i, (request, generated, previous) in enumerate(batch):
            position = len(self.order)
            self.order.append(request.index)
            self.logits[position] = logits[i]
            if generated is None:  # complete already: its row is read back, its files stay
                row, saved = dict(previous), None
            else:
                if request.index not in self._begun:
                    self.begin(request, generated)
                row, saved = self._begun.pop(request.index)
            top = int(np.argmax(probabilities[i]))
            finite = bool(np.isfinite(logits[i]).all())  # NaN logits have no top label
            row.update(
                prediction=self.labels[top] if finite else None,
                probability=round(float(probabilities[i, top]), 6) if finite else None,
                logits=[float(x) for x in logits[i]] if finite else None,
                flagged=row.get("flagged") or (None if finite else "nan"),
            )
            futures = []  # (the row key of the file's sha256, the write returning it)
            if saved is not None:
                futures.append((FILE_KEYS["file_name"], saved))
            view = self.preprocessor.to_image(arrays[i])
            if previous is None:
                futures.append((FILE_KEYS["preprocessed_file_name"], self._submit(
                    files.save_png, view, self.run_dir / row["preprocessed_file_name"], **self.png
                )))
            self.sheets.add(row, images[i], view)
            self.rows[request.index] = row
            self._pending.append((row, futures))
        self._drain(block=False)

    def _write_arrays(self, arrays: np.ndarray) -> None:
        if self._array_file is None:
            # Rows arrive in order, so the .npy is appended to with plain writes: a memmap would
            # keep every written page in this process's resident memory until the end.
            self._array_file = _Hashing(open(self._array_tmp, "xb"))  # never through a link
            np.lib.format.write_array_header_2_0(self._array_file, {
                "descr": np.lib.format.dtype_to_descr(arrays.dtype),
                "fortran_order": False,
                "shape": (self.total, *arrays.shape[1:]),
            })
        self._array_file.write(memoryview(np.ascontiguousarray(arrays)).cast("B"))  # no copy

    def _new_row(self, request, generated) -> dict:
        info = dict(generated.info)
        flagged = info.pop("flagged", None)
        if flagged is None and is_black(generated.image):
            flagged = "black"
        labelled = {} if self.class_ids is None else {
            "label": request.label, "label_id": self.class_ids[request.label],
        }
        return {
            "file_name": manifest.generated_name(request.index),
            "index": request.index,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "source": request.source,
            **info,
            **labelled,
            "preprocessed_file_name": manifest.preprocessed_name(request.index),
            "preprocessing": self.preprocessor.settings(),
            "flagged": flagged,
        }

    def _drain(self, block: bool) -> None:
        while self._pending and (block or all(f.done() for _, f in self._pending[0][1])):
            row, futures = self._pending.popleft()
            for digest_key, future in futures:
                row[digest_key] = future.result()  # re-raises a failed write
            if futures:  # a skipped image's row is in the manifest already
                self._manifest.append(row)
            if self.hook is not None:
                self.hook(row)

    def finish(self) -> dict[int, dict]:
        """Wait for the writes, then put the arrays, predictions and manifest in place."""
        self._drain(block=True)
        self.sheets.close()
        for future in self._writes:
            future.result()
        self._pool.shutdown()
        if self._array_file is not None:
            try:
                self._array_file.close()
            except OSError as exc:
                raise files.write_error(self.run_dir / "preprocessed.npy", exc) from exc
            os.replace(self._array_tmp, self.run_dir / "preprocessed.npy")
            self.sha256["preprocessed.npy"] = self._array_file.hexdigest()
        encoded = io.BytesIO()
        np.save(encoded, self.logits)
        self.sha256["predictions.npy"] = files.write_bytes(self.run_dir / "predictions.npy",
                                                           encoded.getvalue())
        sources = [self.rows[i]["file_name"] for i in self.order]
        files.write_json(self.run_dir / "preprocessed_index.json", sources)
        files.write_json(self.run_dir / "predictions.json", {
            "labels": self.labels,
            "images": [
                {k: self.rows[i][k] for k in ("file_name", "index", "prediction", "probability",
                                               "logits")}
                for i in self.order
            ],
        })
        self._manifest.finalize(self.rows)
        return self.rows

    def abort(self) -> None:
        """Stop after a failure: finish the writes under way, drop the partial arrays."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Keep what is complete, in order, up to the first failed write: a rerun skips it.
        try:
            while self._pending and all(_succeeded(f) for _, f in self._pending[0][1]):
                row, futures = self._pending.popleft()
                for digest_key, future in futures:
                    row[digest_key] = future.result()
                if futures:
                    self._manifest.append(row)
        except AilusionError:  # the disk is full: the row was not written, its image is redone
            pass
        self._manifest.close()
        if self._array_file is not None:
            try:
                self._array_file.close()
            except OSError:  # a full disk cannot take the buffered rest: it is dropped anyway
                pass
        self._array_tmp.unlink(missing_ok=True)


_PNG_TEXT_KEYS = (
    "prompt", "negative_prompt", "seed", "model", "scheduler", "num_inference_steps",
    "guidance_scale", "height", "width", "label",
)


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def is_black(image) -> bool:
    """True when every band of every pixel of ``image`` is 0. Unlike ``getextrema``, which reads
    every pixel, ``getbbox`` stops at the first row with a pixel that is not."""
    return image.getbbox(alpha_only=False) is None


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
