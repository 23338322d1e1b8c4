"""The worker side of the pipeline: batching, preprocessing and the forward pass.

:class:`Consumer` takes images from the generating thread through a bounded queue and runs the
preprocessor and the model on batches, on its own thread, at a lower priority than generation;
a second thread, the recorder, hands each processed batch to
:class:`ailusion.rundir.outputs.Outputs`, which writes what comes out (the rows, the arrays, the
contact sheet), so that recording one batch overlaps the preprocessing and forward pass of the
next.
"""

from __future__ import annotations

import queue
import threading

from typing import TYPE_CHECKING

import numpy as np

from .errors import AilusionError
from .threads import one_intra_op_thread, yield_to_generation

if TYPE_CHECKING:  # pragma: no cover
    from .rundir.outputs import Outputs

_STOP = object()


class Consumer:
    """Runs preprocessing and the forward pass on batches, on its own thread."""

    def __init__(self, outputs: Outputs, preprocessor, model, pm, done: dict, batch_size: int,
                 group=None):
        self.outputs, self.preprocessor, self.model = outputs, preprocessor, model
        self.done, self.batch_size = done, batch_size
        # A batch never spans two groups (output shards): a shard's images are then batched alike
        # whichever shards a run makes, and a resumed or sharded run computes the same logits.
        self.group = group or (lambda index: 0)
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=2 * batch_size)
        # Processed batches waiting for the recorder: one being recorded, one more ready.
        self._processed: queue.Queue = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="ailusion-consumer", daemon=True)
        self._recorder = threading.Thread(target=self._record, name="ailusion-recorder",
                                          daemon=True)
        self._stopped, self._started = threading.Event(), threading.Event()
        outputs.hook = lambda row: pm.hook.image_written(record=row, run_dir=outputs.run_dir)

    def __enter__(self) -> "Consumer":
        self._thread.start()
        self._recorder.start()
        # The generating thread waits while the worker sets its threads up: torch's process-wide
        # thread count changes for a moment then, and the generating thread's must not.
        self._started.wait()
        return self

    def put(self, request, generated) -> None:
        """Hand one image over; blocks while the workers are behind, raises if they failed."""
        if not self._hand(self._queue, (request, generated)) and self.error is not None:
            raise self.error

    def _hand(self, into: queue.Queue, item) -> bool:
        """Put ``item`` into ``into`` unless a worker failed or the run stopped first (a thread
        that failed reads no more: a plain put() on a full queue would wait forever)."""
        while self.error is None and not self._stopped.is_set():
            try:
                into.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _taken(self, source: queue.Queue):
        """The items of ``source`` as they come, until the run stops (``_hand``'s other end)."""
        while not self._stopped.is_set():
            try:
                yield source.get(timeout=0.1)
            except queue.Empty:
                continue

    def _fail(self, exc: BaseException) -> None:
        """Keep a worker's error for the generating thread, and stop the other worker."""
        if self.error is None:
            self.error = exc
        self._stopped.set()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stopped.set()
        elif self._thread.is_alive():
            self._hand(self._queue, _STOP)
        self._thread.join()
        self._recorder.join()
        if exc_type is None and self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            yield_to_generation()
            one_intra_op_thread()
        finally:
            self._started.set()
        batch: list = []
        try:
            for item in self._taken(self._queue):
                if batch and item is not _STOP and (
                        self.group(item[0].index) != self.group(batch[0][0].index)):
                    self._process(batch)
                    batch = []
                if item is not _STOP:
                    batch.append(item)
                    if item[1] is not None:  # a generated image: its PNG can be written now
                        self.outputs.begin(*item)
                if batch and (item is _STOP or len(batch) >= self.batch_size):
                    self._process(batch)
                    batch = []
                if item is _STOP:
                    self._hand(self._processed, _STOP)
                    return
        except BaseException as exc:  # handed to the generating thread by put() or __exit__
            self._fail(exc)

    def _record(self) -> None:
        """The recorder: each processed batch to the outputs, in order (see the module doc)."""
        yield_to_generation()
        try:
            for item in self._taken(self._processed):
                if item is _STOP:
                    return
                self.outputs.add_batch(*item)
        except BaseException as exc:  # handed to the generating thread by put() or __exit__
            self._fail(exc)

    def _process(self, items) -> None:
        from PIL import Image

        batch, images = [], []
        for request, generated in items:
            previous = self.done.get(request.index)
            if generated is None:
                with Image.open(self.outputs.run_dir / previous["file_name"]) as image:
                    images.append(image.convert("RGB"))
            else:
                images.append(generated.image)
            batch.append((request, generated, previous))
        arrays = np.asarray(self.preprocessor.preprocess(images))
        _check_shape("preprocessor.preprocess", arrays, (len(images), *self.preprocessor.output_shape))
        # Models take float32 (the Model contract); a float16 preprocessor only shrinks the files.
        inputs = arrays.astype(np.float32, copy=False)
        logits = np.asarray(self.model.forward(inputs), dtype=np.float32)
        _check_shape("model.forward", logits, (len(images), len(self.outputs.labels)))
        self._hand(self._processed, (batch, images, arrays, logits))


def _check_shape(what: str, array: np.ndarray, expected: tuple) -> None:
    # A plugin's wrong shape would otherwise fail later as an obscure numpy broadcast error.
    if array.shape != tuple(expected):
        raise AilusionError(f"{what} returned shape {array.shape}, expected {tuple(expected)}")
