"""The priority of ailusion's worker threads beside the thread that drives the generator."""

from __future__ import annotations

import os
import sys
import threading

#: How much lower than the generating thread the worker threads are scheduled (Linux nice).
WORKER_NICENESS = 10


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
