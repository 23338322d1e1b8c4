"""The worker side of the pipeline: batching, preprocessing and the forward pass.

:class:`Consumer` takes images from the generating thread through a bounded queue and runs the
preprocessor and the model on batches, on its own thread, at a lower priority than generation;
:class:`ailusion.rundir.outputs.Outputs` writes what comes out.
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
        self._thread = threading.Thread(target=self._run, name="ailusion-consumer", daemon=True)
        self._stopped, self._started = threading.Event(), threading.Event()
        outputs.hook = lambda row: pm.hook.image_written(record=row, run_dir=outputs.run_dir)

    def __enter__(self) -> "Consumer":
        self._thread.start()
        # The generating thread waits while the worker sets its threads up: torch's process-wide
        # thread count changes for a moment then, and the generating thread's must not.
        self._started.wait()
        return self

    def put(self, request, generated) -> None:
        """Hand one image over; blocks while the workers are behind, raises if they failed."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put((request, generated), timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stopped.set()
            self._thread.join()
            return
        # A consumer that failed reads no more: a plain put() on a full queue would wait forever.
        while self.error is None and self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            yield_to_generation()
            one_intra_op_thread()
        finally:
            self._started.set()
        batch: list = []
        try:
            while not self._stopped.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
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
                    return
        except BaseException as exc:  # handed to the generating thread by put() or __exit__
            self.error = exc

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
        self.outputs.add_batch(batch, images, arrays, logits)


def _check_shape(what: str, array: np.ndarray, expected: tuple) -> None:
    # A plugin's wrong shape would otherwise fail later as an obscure numpy broadcast error.
    if array.shape != tuple(expected):
        raise AilusionError(f"{what} returned shape {array.shape}, expected {tuple(expected)}")
