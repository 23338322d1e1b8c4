"""ailusion's worker threads beside the thread that drives the generator: their priority, and
their share of torch's intra-op threads."""

from __future__ import annotations

import os
import sys
import threading

#: How much lower than the generating thread the worker threads are scheduled (Linux nice).
WORKER_NICENESS = 10


def cores() -> int:
    """The cores this process may run on (all of them where the OS cannot say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def yield_to_generation() -> None:
    """Schedule the calling worker thread below the generating thread.

    Where generation runs on the CPU, the workers then take the cycles it leaves idle instead of
    slowing it down; threads the worker starts (pools, OpenMP teams) inherit the priority. Linux
    sets priorities per thread; elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICENESS)
        os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError:
        pass


def one_intra_op_thread() -> None:
    """Run torch's operators called from the calling worker thread on that thread alone.

    The workers are parallel already (PNG encoding, preprocessing and the forward pass run on
    several threads at once), so an OpenMP team per worker only adds threads that spin for the
    cores the others need: on 2 cores a forward pass of 0.9 ms cost 2–3 ms of CPU that way.
    torch keeps its thread count per thread, so the generating thread keeps its own; the
    process-wide value that threads started later begin with is put back as it was.
    """
    torch = sys.modules.get("torch")  # a run whose stages never load torch leaves it unloaded
    if torch is None:
        return
    before = torch.get_num_threads()  # this thread's count, from the process-wide value
    if before == 1:
        return
    torch.set_num_threads(1)  # this thread's count, and the process-wide value
    restore = threading.Thread(target=torch.set_num_threads, args=(before,), daemon=True)
    restore.start()  # the process-wide value back, from a thread of its own
    restore.join()
