"""Starting Julia for the Flux backend and loading its packages, once per process.

Nothing here runs at import time; :func:`load` does the work when the Julia backend is set up,
which the pipeline does before the generator loads torch (importing torch first can corrupt
the heap). Which Julia is started is :mod:`.julia_find`'s business; where none exists and none
may be installed, :func:`load` fails at once with one line instead of letting juliapkg download.

Which packages it loads, and how they get installed, is :mod:`.julia_packages`' business.

Julia is started, and every call into it made, on one thread (:mod:`.julia_thread`).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

from ailusion.devices import claim_julia_process, has_visible_gpu, job_gpu_ordinal
from ailusion.errors import AilusionError

from . import julia_find
from .julia_find import JULIAPKG_JSON, NO_JULIA, find_julia  # noqa: F401  (the module's API)
from .julia_packages import GPU_PACKAGES, julia_packages  # noqa: F401  (the module's API)
from .julia_packages import declare as _require_packages
from .julia_packages import install_in_session
from .julia_thread import call

log = logging.getLogger(__name__)
_exit_hook: list = []
#: What this process's Julia has loaded with ``using``, and the GPU the job selected.
_loaded: dict = {"packages": set(), "gpu": None}


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA GPU is there and not hidden by ``CUDA_VISIBLE_DEVICES``."""
    return has_visible_gpu()


def set_defaults() -> None:
    """juliacall's options, unless set already: one Julia thread and Python's own signal handling
    (so Ctrl-C still stops a run); more threads need Julia's signal handling to avoid segfaults."""
    threads = os.environ.setdefault(
        "PYTHON_JULIACALL_THREADS", os.environ.get("JULIA_NUM_THREADS", "1")
    )
    os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "no" if threads == "1" else "yes")


def load(gpu: bool = False, install: bool = False):
    """Start Julia once with AilusionFlux (and CUDA, cuDNN with ``gpu``) loaded; return ``Main``.

    Raises :class:`AilusionError` with one line when there is no Julia and ``install`` is false,
    or when Julia or its packages fail to load.
    """
    return call(_load, gpu, install)


def _prepare_start(install: bool) -> None:
    """Checks and settings before the first ``import juliacall``; nothing started yet."""
    julia_find.check_juliapkg()
    exe = find_julia()
    named = julia_find.named_julia()
    if exe is None and (not install or named is not None):
        import juliapkg

        os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")
        juliapkg.offline(True)
        raise AilusionError(julia_find.no_julia_reason())
    if exe is not None and not install:
        julia_find.check_version(exe)
    _loaded["after_torch"] = "torch" in sys.modules
    if _loaded["after_torch"]:
        log.warning(
            "torch was imported before juliacall, which can crash Julia: import juliacall first"
        )
    set_defaults()
    if exe is not None and julia_find.project_without_exe():
        # juliacall takes a project only with an executable (l.193-221): the one found completes
        # the pair, and the project is then used as it is.
        os.environ["PYTHON_JULIACALL_EXE"] = exe
    if julia_find.juliacall_owns_project():
        return
    if exe is not None and (named is not None or not install):
        julia_find.hand_to_juliapkg(exe)


def _load(gpu: bool, install: bool):
    if "juliacall" not in sys.modules:
        _prepare_start(install)
    claim_julia_process()  # fails in a process forked from one that runs Julia
    wanted = ["CUDA", "cuDNN", "AilusionFlux"] if gpu else ["AilusionFlux"]
    try:
        _require_packages(gpu)
        from juliacall import Main as jl  # the first import resolves the deps file and starts

        install_in_session(jl, wanted)
        new = [name for name in wanted if name not in _loaded["packages"]]
        if new:
            jl.seval("using " + ", ".join(new))
            _loaded["packages"].update(new)
        if gpu:
            _select_job_gpu(jl)
    except AilusionError:
        raise
    except Exception as exc:  # juliapkg, Pkg and Julia errors
        message = first_line(exc)
    else:
        if not _exit_hook:
            # Registered after juliacall's own exit hook, so it runs first: with the collector
            # off, Julia's shutdown on the main thread need not wait for this thread.
            atexit.register(_before_julia_exit, jl)
            _exit_hook.append(_before_julia_exit)
        return jl
    # Raised outside the handler: the Julia exception must not travel to other threads.
    names = ", ".join(wanted)
    raise AilusionError(f"model.backend=julia: Julia could not load {names}: {message}")


def _select_job_gpu(jl) -> None:
    """Point CUDA.jl at the job's GPU (``gpu_per_job``) where CUDA started in an earlier job of
    this process: CUDA.jl reads ``CUDA_VISIBLE_DEVICES`` once, as torch does."""
    if job_gpu_ordinal(1) is None:  # no job was given a GPU
        return
    count = int(jl.seval("CUDA.functional() ? length(CUDA.devices()) : 0"))
    ordinal = job_gpu_ordinal(count)
    if ordinal is not None and ordinal != _loaded["gpu"]:
        jl.seval(f"CUDA.device!({ordinal})")
        _loaded["gpu"] = ordinal


def started_after_torch() -> bool | None:
    """Whether this process started Julia after torch was imported (None: it did not start it)."""
    return _loaded.get("after_torch")


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (Julia's run over many)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _before_julia_exit(jl) -> None:
    call(_disable_julia_gc, jl)


def _disable_julia_gc(jl) -> None:
    jl.GC.enable(False)
