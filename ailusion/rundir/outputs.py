"""Everything a run writes into its run dir, off the generating thread.

:class:`Outputs` turns each image into a manifest row and a
:class:`~ailusion.rundir.writers.Sample`, has the run's writer (``output.format``) encode it on a
thread pool (with a bounded number in flight): the generated image as soon as it arrives, the
rest once its batch is processed; and hands the samples to the writer in image order once
encoded.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import AilusionError
from ..threads import yield_to_generation
from .writers import Sample


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Outputs:
    """Everything a run writes into its run dir, through its writer."""

    def __init__(self, run_dir: Path, total: int, preprocessor, model, writer,
                 class_ids: dict[str, int] | None = None, batch_size: int = 8):
        self.run_dir, self.total, self.writer = Path(run_dir), total, writer
        self.class_ids = class_ids  # {class: label_id} in a labelled run, else None
        self.preprocessor, self.labels = preprocessor, list(model.labels)
        self.logits = np.zeros((total, len(self.labels)), dtype=np.float32)
        self.rows: dict[int, dict] = {}
        self.order: list[int] = []  # image index of each row of the arrays
        workers = max(2, os.cpu_count() or 2)
        self._pool = ThreadPoolExecutor(
            workers, thread_name_prefix="ailusion-io", initializer=yield_to_generation
        )
        # Two encodes per image, and the consumer submits a batch's at once, then preprocesses
        # and forwards the next: room for two batches keeps the encoders busy meanwhile (with
        # room for fewer, the pool ran out of work 5% of a run while the consumer was busy).
        self._in_flight = threading.BoundedSemaphore(4 * batch_size + 2 * workers)
        self._pending: deque[tuple[Sample, list[Future]]] = deque()
        self._begun: dict[int, tuple[Sample, Future]] = {}  # by image index: see begin()
        self.hook = None  # set by the Consumer: called with each complete row
        self._writes: list[Future] = []

    def write(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the writing threads; :meth:`finish` waits for it and re-raises."""
        self._writes.append(self._submit(fn, *args))

    def _submit(self, fn, *args, **kwargs) -> Future:
        self._in_flight.acquire()
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._in_flight.release())
        return future

    def begin(self, request, generated) -> None:
        """Start writing a generated image as soon as it arrives: its PNG and text chunks need
        nothing its batch computes, so it is encoded while the batch fills, and the last batch
        of a run leaves less to do after the last image."""
        sample = Sample(index=request.index, row=self._new_row(request, generated),
                        image=generated.image)
        self._begun[request.index] = sample, self._submit(self.writer.encode, sample)

    def add_batch(self, batch, images, arrays: np.ndarray, logits: np.ndarray) -> None:
        """Record one processed batch of ``(request, generated, previous_row)`` triples, with
        each one's image (generated now, or read back for a complete one)."""
        probabilities = softmax(logits.astype(np.float64))
        for i, (request, generated, previous) in enumerate(batch):
            position = len(self.order)
            self.order.append(request.index)
            self.logits[position] = logits[i]
            if generated is None:  # complete already: its row is read back, its files stay
                sample = Sample(index=request.index, row=dict(previous), image=images[i],
                                kept=True)
                futures = []
            else:
                if request.index not in self._begun:
                    self.begin(request, generated)
                sample, encoded = self._begun.pop(request.index)
                futures = [encoded]
            row = sample.row
            top = int(np.argmax(probabilities[i]))
            finite = bool(np.isfinite(logits[i]).all())  # NaN logits have no top label
            row.update(
                prediction=self.labels[top] if finite else None,
                probability=round(float(probabilities[i, top]), 6) if finite else None,
                logits=[float(x) for x in logits[i]] if finite else None,
                flagged=row.get("flagged") or (None if finite else "nan"),
            )
            sample.view = self.preprocessor.to_image(arrays[i])
            sample.array, sample.logits = arrays[i], logits[i]
            if not sample.kept:
                futures.append(self._submit(self.writer.encode_processed, sample))
            self.rows[request.index] = row
            self._pending.append((sample, futures))
        self._drain(block=False)

    def _new_row(self, request, generated) -> dict:
        info = dict(generated.info)
        flagged = info.pop("flagged", None)
        if flagged is None and is_black(generated.image):
            flagged = "black"
        labelled = {} if self.class_ids is None else {
            "label": request.label, "label_id": self.class_ids[request.label],
        }
        return {
            **self.writer.names(request.index),
            "index": request.index,
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "seed": request.seed,
            "source": request.source,
            **info,
            **labelled,
            "flagged": flagged,
        }

    def _drain(self, block: bool) -> None:
        while self._pending and (block or all(f.done() for f in self._pending[0][1])):
            sample, futures = self._pending.popleft()
            for future in futures:
                future.result()  # re-raises a failed encoding or write
            self.writer.add(sample)
            if self.hook is not None:
                self.hook(sample.row)

    @property
    def sha256(self) -> dict[str, str]:
        """The sha256 of the files the run's record keeps (the imagefolder arrays), by name."""
        return dict(getattr(self.writer, "sha256", {}))

    def finish(self) -> dict[int, dict]:
        """Wait for the writes, then have the writer put in place what it still holds."""
        self._drain(block=True)
        for future in self._writes:
            future.result()
        self._pool.shutdown()
        self.writer.finish()
        return self.rows

    def abort(self) -> None:
        """Stop after a failure: finish the writes under way, keep what is complete."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        # Keep what is complete, in order, up to the first failed write: a rerun skips it.
        try:
            while self._pending and all(_succeeded(f) for f in self._pending[0][1]):
                self.writer.add(self._pending.popleft()[0])
        except AilusionError:  # the disk is full: the row was not written, its image is redone
            pass
        finally:
            self.writer.abort()


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def is_black(image) -> bool:
    """True when every band of every pixel of ``image`` is 0. Unlike ``getextrema``, which reads
    every pixel, ``getbbox`` stops at the first row with a pixel that is not."""
    return image.getbbox(alpha_only=False) is None
