"""Starting Julia for the Flux backend and loading its packages, once per process.

Nothing here runs at import time; :func:`load` does the work when the Julia backend is set up,
which the pipeline does before the generator loads torch (importing torch first can corrupt
the heap). Which Julia is started is :mod:`.julia_find`'s business; where none exists and none
may be installed, :func:`load` fails at once with one line instead of letting juliapkg download.

juliapkg resolves its deps file (installs the packages) only inside juliacall's ``init()``, at
the first ``import juliacall`` (juliacall ``__init__.py`` l.199-211); ``juliapkg.add`` later only
rewrites the file (deps.py ``add``). So packages asked for after Julia started, CUDA and cuDNN
for a GPU job after a CPU one, are added through Julia's Pkg in the running session.

Julia is started, and every call into it made, on one thread (:mod:`.julia_thread`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys

from ailusion.devices import claim_julia_process, has_visible_gpu, job_gpu_ordinal
from ailusion.errors import AilusionError

from . import julia_find
from .julia_find import JULIAPKG_JSON, NO_JULIA, find_julia  # noqa: F401  (the module's API)
from .julia_thread import call

log = logging.getLogger(__name__)
_exit_hook: list = []
#: What this process's Julia has loaded with ``using``, and the GPU the job selected.
_loaded: dict = {"packages": set(), "gpu": None}

# Added to the Julia environment only when the GPU is asked for, so CPU users never download
# them. CUDA.jl 6 moved cuDNN to 6.x with it; Flux accepts both from 0.16.10 on (its
# Project.toml: CUDA = "5, 6", cuDNN = "1, 6"), NNlib's cuDNN extension from 0.9.x ("1, 6").
GPU_PACKAGES = {
    "CUDA": {"uuid": "052768ef-5323-5732-b1bb-66c8b64840ba", "version": "5, 6"},
    "cuDNN": {"uuid": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd", "version": "1, 6"},
}
ACTIVE_PROJECT = 'something(Base.active_project(), "")'


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


def julia_packages(gpu: bool = False) -> dict[str, dict]:
    """The packages of ``juliapkg.json``, paths made absolute, plus CUDA and cuDNN with ``gpu``."""
    packages = {}
    for name, info in json.loads(JULIAPKG_JSON.read_text(encoding="utf-8"))["packages"].items():
        info = dict(info)
        if "path" in info:
            # Exactly as juliapkg normalises the same entry when it finds this file itself (an
            # editable install; deps.py deps_files and find_requirements): Path.resolve() would
            # follow symlinks that normpath keeps, and juliapkg would raise "'path' entries are
            # not unique".
            base = os.path.dirname(os.path.abspath(JULIAPKG_JSON))
            info["path"] = os.path.normcase(os.path.normpath(os.path.join(base, info["path"])))
        packages[name] = info
    return packages | (GPU_PACKAGES if gpu else {})


def _require_packages(gpu: bool) -> None:
    # juliapkg finds juliapkg.json files only at the top of an installed package, not in
    # ailusion/plugins/flux_cnn/, so the packages are declared to it here (and kept there, so
    # the next process starts with CUDA once a GPU was asked for).
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

        _install_in_session(jl, wanted)
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


def _install_in_session(jl, wanted: list[str]) -> None:
    """Add the ``wanted`` packages the active project lacks, with Pkg in the running Julia.

    Without this, ``using CUDA`` in a project without it fails, or loads whatever CUDA the
    user's default environment holds (``@v1.x`` is on Julia's ``LOAD_PATH``).
    """
    import tomlkit  # juliapkg's own TOML library

    project = str(jl.seval(ACTIVE_PROJECT))
    try:
        with open(project, encoding="utf-8") as f:
            deps = tomlkit.load(f).get("deps", {})
    except (OSError, tomlkit.exceptions.ParseError):
        deps = {}
    missing = [name for name in wanted if name not in deps]
    if not missing:
        return
    import juliapkg

    names = ", ".join(missing)
    if julia_find.juliacall_owns_project():
        raise AilusionError(
            f"model.backend=julia: {names} missing from the Julia project {project} "
            "(PYTHON_JULIACALL_PROJECT, used as it is): add them with Pkg, or unset "
            "PYTHON_JULIACALL_PROJECT and PYTHON_JULIACALL_EXE to let juliapkg manage it"
        )
    if juliapkg.deps.STATE["offline"]:
        raise AilusionError(
            f"model.backend=julia: {names} missing from the Julia project {project}, and "
            "PYTHON_JULIAPKG_OFFLINE=yes forbids installing them: run once with "
            "PYTHON_JULIAPKG_OFFLINE=no (needs internet)"
        )
    log.warning("Installing %s into the Julia project %s (minutes, once)", names, project)
    jl.seval(pkg_script({name: julia_packages(gpu=True)[name] for name in missing}))


def pkg_script(packages: dict[str, dict]) -> str:
    """The Pkg calls that add ``packages`` to the active project, as juliapkg writes them
    (deps.py ``resolve``: ``Pkg.develop`` for dev entries, ``Pkg.add`` for the rest), plus
    their compat entries (juliapkg writes those into Project.toml itself)."""
    import juliapkg

    specs = {name: juliapkg.PkgSpec(name, **info) for name, info in packages.items()}
    dev = [spec.jlstr() for spec in specs.values() if spec.dev]
    add = [spec.jlstr() for spec in specs.values() if not spec.dev]
    lines = ["import Pkg"]
    lines += [f"Pkg.develop([{', '.join(dev)}])"] if dev else []
    # PRESERVE_ALL: the packages this Julia has loaded (Flux, …) cannot change under it, so the
    # new ones must fit the versions installed, or Pkg fails saying which conflict.
    lines += [f"Pkg.add([{', '.join(add)}]; preserve=Pkg.PRESERVE_ALL)"] if add else []
    lines += [f'Pkg.compat("{s.name}", "{s.version}")' for s in specs.values() if s.version]
    return "\n".join([*lines, "nothing"])


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
