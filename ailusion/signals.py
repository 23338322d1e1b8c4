"""What a signal does to an ``ailusion`` command: SIGINT (Ctrl-C) and SIGTERM (``docker stop``,
SLURM preemption, systemd) both stop it cleanly.

The first of them raises :class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) in the main
thread, so the run stops as on Ctrl-C: the writes under way finish, every complete image keeps its
manifest row, temporary files are removed, the lock is released, and the command says how to
resume and exits 130 (SIGINT) or 143 (SIGTERM). A second signal while it stops does not cut that
cleanup short: it is answered with one line and otherwise ignored (SIGKILL still kills; the next
run then removes what was left).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Iterator

#: The signals that stop a command cleanly, with their exit statuses (128 + the number).
STOPPING = {signal.SIGINT: 130, signal.SIGTERM: 143}
#: Set by the ``ailusion`` command: once it is stopping it exits, and a signal arriving after the
#: cleanup (while it prints and exits) is ignored too, not a traceback or a kill.
IGNORE_AFTER_STOP = False


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM; unwinds exactly as Ctrl-C does."""

    signum = signal.SIGTERM


@contextmanager
def stop_cleanly() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM stop the command as described above (main thread
    only; elsewhere the block runs with the handlers it has)."""
    try:
        previous = {signum: signal.getsignal(signum) for signum in STOPPING}
        stopping: list[int] = []

        def handler(signum, frame):
            if stopping:
                print("ailusion: still stopping: removing temporary files", file=sys.stderr)
                return
            stopping.append(signum)
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

        for signum in STOPPING:
            signal.signal(signum, handler)
    except ValueError:  # not the main thread of the main interpreter
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_IGN if stopping and IGNORE_AFTER_STOP else old)


def exit_status(exc: KeyboardInterrupt) -> int:
    """130 for an interrupt (SIGINT, Ctrl-C), 143 for SIGTERM."""
    return STOPPING[getattr(exc, "signum", signal.SIGINT)]


def stopped_message(exc: KeyboardInterrupt) -> str:
    """The line a stopped command prints."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    return f"ailusion: {what}; run again with the same config to resume"
