"""Which Julia the Flux backend starts: every way juliacall and juliapkg let a user name one.

Nothing here starts Julia, resolves packages or downloads anything; it reads the environment,
``-X`` options, juliapkg's state and, to check a version, runs ``julia --version``.

Line numbers refer to juliacall 0.9.37 (``pysrc/juliacall/__init__.py`` of PythonCall.jl) and
juliapkg 0.1.28 (``src/juliapkg/`` of pyjuliapkg).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ailusion.errors import AilusionError

JULIAPKG_JSON = Path(__file__).with_name("juliapkg.json")
#: juliapkg before 0.1.18 rebinds ``STATE`` in ``reset_state()`` (state.py, fixed by "avoid
#: multiple STATE instances", #61), so an executable handed over after juliapkg was imported
#: would be silently ignored by the modules that imported ``STATE`` earlier.
MIN_JULIAPKG = (0, 1, 18)
NO_JULIA = (
    "model.backend=julia: no Julia executable found; install Julia (https://julialang.org/install) "
    "or point PYTHON_JULIACALL_EXE at one, or set model.install_julia=true to let juliacall "
    "download it (needs internet; the first run takes minutes), or use model.backend=torch"
)
_EXE = "julia.exe" if os.name == "nt" else "julia"


@dataclass(frozen=True)
class Named:
    """A Julia the user named: where (``source``), as what (``value``), and the executable found
    for it (``None`` when it names none)."""

    source: str
    value: str
    executable: str | None

    @property
    def problem(self) -> str:
        return f"{self.source}={self.value} names no Julia executable"


def _setting(xkey: str, envkey: str) -> tuple[str, str] | None:
    """An option as juliacall's ``option()`` reads it (l.67-85): ``-X`` first, then the env."""
    value = sys._xoptions.get(xkey)
    if value is not None:
        return f"-X {xkey}", "" if value is True else value
    value = os.environ.get(envkey)
    return (envkey, value) if value is not None else None


def named_julia() -> Named | None:
    """The Julia named by the user, in the order juliacall and juliapkg read the settings."""
    exe = _setting("juliacall-exe", "PYTHON_JULIACALL_EXE")  # l.184, executable_option('exe')
    if exe:
        return Named(*exe, shutil.which(exe[1]) if exe[1] else None)
    home = _setting("juliacall-home", "PYTHON_JULIACALL_BINDIR")  # l.164, path_option('home')
    if home:  # l.190-192: with a bindir and no exe, juliacall starts {bindir}/julia
        return Named(*home, shutil.which(os.path.join(home[1], _EXE)) if home[1] else None)
    exe = _setting("juliapkg-exe", "PYTHON_JULIAPKG_EXE")  # juliapkg state.py l.51
    if exe:
        return Named(*exe, shutil.which(exe[1]) if exe[1] else None)
    return None


def find_julia() -> str | None:
    """The Julia executable that would be started, or None: a named one (even if broken, as
    juliacall would not look further), else what juliapkg used before or installed into its
    prefix, the one on PATH (juliaup's launcher too), or one juliaup installed off PATH."""
    named = named_julia()
    if named is not None:
        return named.executable
    from juliapkg.find_julia import ju_find_julia_noinstall
    from juliapkg.state import STATE

    candidates = [
        _resolved_executable(STATE["meta"]),
        os.path.join(STATE["install"], "bin", _EXE),  # where juliapkg installs Julia
    ]
    for candidate in candidates:
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    on_path = shutil.which("julia")
    if on_path:
        return on_path
    try:  # juliaup's own record of the Julias it installed, as juliapkg reads it
        juliaup = ju_find_julia_noinstall()
    except Exception:  # a broken juliaup.json is not ours to report
        juliaup = None
    return juliaup[0] if juliaup else None


def no_julia_reason() -> str:
    """Why no Julia can be started, in one line naming the setting at fault."""
    named = named_julia()
    if named is not None and named.executable is None:
        return (
            f"model.backend=julia: {named.problem}; fix or unset it, or use model.backend=torch"
        )
    return NO_JULIA


def _resolved_executable(meta_file: str) -> str | None:
    try:
        with open(meta_file, encoding="utf-8") as f:
            return json.load(f).get("executable")
    except (OSError, ValueError, AttributeError):
        return None


def check_juliapkg() -> None:
    """Fail with one line when the installed juliapkg predates :data:`MIN_JULIAPKG`."""
    found = metadata.version("juliapkg")
    numbers = tuple(int(part) for part in found.split(".")[:3] if part.isdigit())
    if numbers < MIN_JULIAPKG:
        need = ".".join(map(str, MIN_JULIAPKG))
        raise AilusionError(
            f"model.backend=julia: juliapkg {found} is too old (before {need} it ignores the "
            f"Julia it is given); pip install 'juliapkg>={need}'"
        )


def required_julia():
    """The Julia versions juliapkg will accept: the intersection of the ``julia`` entries of the
    deps files it reads (deps.py ``find_requirements``), ours included, as a juliapkg ``Compat``."""
    from juliapkg.compat import Compat
    from juliapkg.deps import deps_files, openssl_compat

    compat = None
    for fn in {*deps_files(), str(JULIAPKG_JSON)}:
        with open(fn, encoding="utf-8") as f:
            deps = json.load(f)
        entries = [deps.get("julia")]
        if deps.get("packages", {}).get("OpenSSL_jll", {}).get("version") == "<=python":
            entries.append(openssl_compat()[1])  # deps.py: Julia 1.12 needs OpenSSL 3.5
        for entry in filter(None, entries):
            compat = Compat.parse(entry) if compat is None else compat & Compat.parse(entry)
    return compat


def check_version(exe: str) -> None:
    """Fail with one line unless ``exe`` is a Julia that juliapkg accepts. juliapkg itself would
    install another Julia into its prefix, or ``juliaup add`` one (find_julia.py, ``upgrade``)."""
    from juliapkg.find_julia import julia_version

    version = julia_version(exe)
    if version is None:
        raise AilusionError(f"model.backend=julia: {exe} is not a Julia executable")
    compat = required_julia()
    if compat is not None and version not in compat:
        raise AilusionError(
            f"model.backend=julia: found Julia {version} at {exe}, need {_describe(compat)}; "
            "install a newer Julia (https://julialang.org/install) or set model.install_julia=true"
        )


def _describe(compat) -> str:
    """``≥ 1.10.3, < 2.0.0`` for juliapkg's ``^1.10.3``."""
    return " or ".join(f"≥ {r.lo}, < {r.hi}" for r in compat.clauses)


def juliacall_owns_project() -> bool:
    """Whether the user gave juliacall both an executable and a project, which it then uses
    as they are, without juliapkg (``__init__.py`` l.193-194)."""
    return bool(
        _setting("juliacall-exe", "PYTHON_JULIACALL_EXE")
        and _setting("juliacall-project", "PYTHON_JULIACALL_PROJECT")
    )


def project_without_exe() -> bool:
    """Whether juliacall was given a project but no executable (which it refuses)."""
    return bool(
        _setting("juliacall-project", "PYTHON_JULIACALL_PROJECT")
        and not _setting("juliacall-exe", "PYTHON_JULIACALL_EXE")
    )


def hand_to_juliapkg(exe: str) -> None:
    """Make ``exe`` the Julia juliapkg uses, and take juliacall's own naming of it away.

    juliacall accepts an executable (or a bindir, which it turns into one, l.190-192) only
    together with a project, and raises "Both PYTHON_JULIACALL_PROJECT and
    PYTHON_JULIACALL_EXE must be set together" otherwise (l.193-221). As juliapkg's
    ``PYTHON_JULIAPKG_EXE`` the same Julia installs the packages and is started, and juliapkg's
    ``find_julia`` returns it at once (find_julia.py l.45-56): no install, no ``juliaup add``.
    """
    for xkey in ("juliacall-exe", "juliacall-home"):
        sys._xoptions.pop(xkey, None)
    for envkey in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIACALL_BINDIR"):
        os.environ.pop(envkey, None)
    if "juliapkg-exe" in sys._xoptions:  # juliapkg reads -X before the env (state.py l.8-20)
        sys._xoptions["juliapkg-exe"] = exe
    os.environ["PYTHON_JULIAPKG_EXE"] = exe
    from juliapkg.state import reset_state

    reset_state()  # juliapkg read its settings when first imported
