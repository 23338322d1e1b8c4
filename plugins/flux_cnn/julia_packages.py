"""The Julia packages the Flux backend needs, and how they get into the Julia environment.

juliapkg resolves its deps file (installs the packages) only inside juliacall's ``init()``, at
the first ``import juliacall`` (juliacall ``__init__.py`` l.199-211); ``juliapkg.add`` later only
rewrites the file (deps.py ``add``). So the packages are declared before Julia starts, and those
asked for after it started (CUDA and cuDNN for a GPU job after a CPU one) are added with Julia's
Pkg in the running session, and declared too, so the next process starts with them.
"""

from __future__ import annotations

import json
import logging
import os

from ailusion.errors import AilusionError

from . import julia_find
from .julia_find import JULIAPKG_JSON

log = logging.getLogger(__name__)

# Added to the Julia environment only when the GPU is asked for, so CPU users never download
# them. CUDA.jl 6 moved cuDNN to 6.x with it; Flux accepts both from 0.16.10 on (its
# Project.toml: CUDA = "5, 6", cuDNN = "1, 6"), NNlib's cuDNN extension from 0.9.x ("1, 6").
GPU_PACKAGES = {
    "CUDA": {"uuid": "052768ef-5323-5732-b1bb-66c8b64840ba", "version": "5, 6"},
    "cuDNN": {"uuid": "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd", "version": "1, 6"},
}
ACTIVE_PROJECT = 'something(Base.active_project(), "")'


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


def declare(gpu: bool) -> None:
    """Declare the packages (CUDA and cuDNN too with ``gpu``) in juliapkg's deps file."""
    # juliapkg finds juliapkg.json files only at the top of an installed package, not in
    # ailusion/plugins/flux_cnn/, so the packages are declared to it here (and kept there, so
    # the next process starts with CUDA once a GPU was asked for).
    import juliapkg

    declared = juliapkg.deps.load_cur_deps().get("packages", {})
    for name, info in julia_packages(gpu).items():
        spec = juliapkg.PkgSpec(name, **info)
        if declared.get(name) != spec.depsdict():
            juliapkg.add(spec)


def install_in_session(jl, wanted: list[str]) -> None:
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
