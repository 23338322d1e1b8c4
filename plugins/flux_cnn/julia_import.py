"""Starting Julia for the Flux backend: find it, set juliacall's defaults, import it before torch.

Nothing here runs at import time; :func:`load` does the work when the Julia backend is set up,
which the pipeline does before the generator loads torch (importing torch first can corrupt
the heap). Where no Julia executable exists and none was asked to be installed, :func:`load`
fails at once with one line instead of letting juliapkg try to download Julia.

Julia is started, and every call into it made, on one thread (:mod:`.julia_thread`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from ailusion.devices import claim_julia_process
from ailusion.errors import AilusionError

from .julia_thread import call

log = logging.getLogger(__name__)
_exit_hook: list = []

JULIAPKG_JSON = Path(__file__).with_name("juliapkg.json")
# Added to the Julia environment only when the GPU is asked for, so CPU users never download them.
GPU_PACKAGES = {
    "CUDA": {"uuid": "052768ef-5323-5732-b1bb-66c8b64840ba", "version": "5"},
    "cuDNN": {"uuid": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd", "version": "1"},
}
NO_JULIA = (
    "model.backend=julia: no Julia executable found; install Julia (https://julialang.org/install) "
    "or point PYTHON_JULIACALL_EXE at one, or set model.install_julia=true to let juliacall "
    "download it (needs internet; the first run takes minutes), or use model.backend=torch"
)


def find_julia() -> str | None:
    """The Julia executable juliacall would start, or None; never resolves, installs, downloads."""
    from juliapkg.state import STATE  # reads the environment only

    bindir = os.environ.get("PYTHON_JULIACALL_BINDIR")
    candidates = [
        sys._xoptions.get("juliacall-exe") or os.environ.get("PYTHON_JULIACALL_EXE"),
        os.path.join(bindir, "julia") if bindir else None,
        STATE["override_executable"],  # PYTHON_JULIAPKG_EXE
        _resolved_executable(STATE["meta"]),  # what juliapkg used last time
        os.path.join(STATE["install"], "bin", "julia"),  # where juliapkg installs Julia
        shutil.which("julia"),  # also juliaup's launcher
    ]
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def _resolved_executable(meta_file: str) -> str | None:
    try:
        with open(meta_file, encoding="utf-8") as f:
            return json.load(f).get("executable")
    except (OSError, ValueError, AttributeError):
        return None


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA driver is present, known without loading CUDA."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def set_defaults() -> None:
    """juliacall's options, unless set already: one Julia thread and Python's own signal handling
    (so Ctrl-C still stops a run); more threads need Julia's signal handling to avoid segfaults."""
    threads = os.environ.setdefault(
        "PYTHON_JULIACALL_THREADS", os.environ.get("JULIA_NUM_THREADS", "1")
    )
    os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "no" if threads == "1" else "yes")


def hand_executable_to_juliapkg() -> None:
    """Let ``PYTHON_JULIACALL_EXE`` alone choose the Julia: juliacall accepts it only together with
    ``PYTHON_JULIACALL_PROJECT`` (a project it then leaves alone), so it goes to juliapkg instead,
    which installs the packages with that Julia."""
    exe = os.environ.get("PYTHON_JULIACALL_EXE")
    if exe and not os.environ.get("PYTHON_JULIACALL_PROJECT"):
        from juliapkg.state import reset_state

        os.environ.setdefault("PYTHON_JULIAPKG_EXE", os.environ.pop("PYTHON_JULIACALL_EXE"))
        reset_state()  # juliapkg read its environment when first imported


def julia_packages(gpu: bool = False) -> dict[str, dict]:
    """The packages of ``juliapkg.json``, paths made absolute, plus CUDA and cuDNN with ``gpu``."""
    packages = {}
    for name, info in json.loads(JULIAPKG_JSON.read_text(encoding="utf-8"))["packages"].items():
        info = dict(info)
        if "path" in info:
            info["path"] = str((JULIAPKG_JSON.parent / info["path"]).resolve())
        packages[name] = info
    return packages | (GPU_PACKAGES if gpu else {})


def _require_packages(gpu: bool) -> None:
    # juliapkg finds juliapkg.json files only at the top of an installed package, not in
    # ailusion/plugins/flux_cnn/, so the packages are declared to it here.
    import juliapkg

    declared = juliapkg.deps.load_cur_deps().get("packages", {})
    for name, info in julia_packages(gpu).items():
        spec = juliapkg.PkgSpec(name, **info)
        if declared.get(name) != spec.depsdict():
            juliapkg.add(spec)


def load(gpu: bool = False, install: bool = False):
    """Start Julia once with AilusionFlux (and CUDA, cuDNN with ``gpu``) loaded; return ``Main``.

    Raises :class:`AilusionError` with one line when there is no Julia and ``install`` is false,
    or when Julia or its packages fail to load.
    """
    return call(_load, gpu, install)


def _load(gpu: bool, install: bool):
    if "juliacall" not in sys.modules:
        if find_julia() is None and not install:
            import juliapkg

            os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")
            juliapkg.offline(True)
            raise AilusionError(NO_JULIA)
        if "torch" in sys.modules:
            log.warning(
                "torch was imported before juliacall, which can crash Julia: import juliacall first"
            )
        set_defaults()
        hand_executable_to_juliapkg()
    claim_julia_process()  # fails in a process forked from one that runs Julia
    try:
        _require_packages(gpu)
        from juliacall import Main as jl

        jl.seval("using CUDA, cuDNN, AilusionFlux" if gpu else "using AilusionFlux")
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
    raise AilusionError(f"model.backend=julia: Julia could not load AilusionFlux: {message}")


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (Julia's run over many)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _before_julia_exit(jl) -> None:
    call(_disable_julia_gc, jl)


def _disable_julia_gc(jl) -> None:
    jl.GC.enable(False)
