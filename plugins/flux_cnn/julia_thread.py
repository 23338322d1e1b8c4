"""The one thread that starts Julia and makes every call into it.

Julia belongs to the thread that starts it: a call from another thread can hang as soon as
Julia's garbage collector waits for the first thread while that one is busy running Python (the
pipeline's generating thread, for one). So the Flux backend enters Julia only through
:func:`call`, whichever thread it is called from. Dropping the last reference to a Julia value
calls into Julia too: values that may outlive their thread go through :func:`release`.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future


class _JuliaThread:
    """A daemon thread that runs the functions handed to it, one at a time."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ailusion-julia", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            fn, args, future = self.jobs.get()
            _released.clear()  # their last references, dropped here
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def call(self, fn, *args):
        if threading.current_thread() is self.thread:
            return fn(*args)
        future: Future = Future()
        self.jobs.put((fn, args, future))
        return future.result()


_thread: _JuliaThread | None = None
_lock = threading.Lock()
_released: list = []


def release(*values) -> None:
    """Keep ``values`` (Julia values) until the Julia thread drops them, at its next call."""
    _released.extend(values)


def call(fn, *args):
    """Run ``fn(*args)`` on the thread that owns Julia and return its result."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = _JuliaThread()
    return _thread.call(fn, *args)


def _forget_thread_after_fork() -> None:
    # The child of a fork has no copy of the thread; a call there must not wait for it forever.
    global _thread, _lock
    _thread, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_thread_after_fork)
