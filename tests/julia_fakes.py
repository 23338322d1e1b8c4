"""Fakes for Julia's start-up: a ``julia`` and a ``juliaup`` that record how they were run, and a
``juliacall`` package that decides as the real one does and records what it was asked.

The real juliapkg runs against them (resolving, writing Project.toml, finding Julia), so a test
sees the deps files, the environment and the order of calls the Flux backend's start-up
produces. The fake juliacall follows juliacall 0.9.37 ``__init__.py`` l.67-85 (options), l.164
and l.182-184 (which options), l.190-221 (exe, project and juliapkg).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

FAKE_JULIA = '''#!{python}
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("julia version {version}")
    sys.exit(0)
with open({log!r}, "a") as f:
    f.write(json.dumps({{"argv": args, "PYTHON_JULIAPKG_OFFLINE":
                        os.environ.get("PYTHON_JULIAPKG_OFFLINE")}}) + "\\n")
if "Libdl" in args[-1]:
    sys.stdout.write({libjulia!r} + "\\0" + {bindir!r})
'''

FAKE_JULIACALL = """from julia_fakes import start_fake_juliacall
start_fake_juliacall(globals())
"""

#: What the fake Julia answers to ``CUDA.functional() ? length(CUDA.devices()) : 0``.
CUDA_DEVICES_ENV = "FAKE_JULIA_CUDA_DEVICES"
#: An error for the fake Julia's Pkg to raise (its first line).
PKG_ERROR_ENV = "FAKE_JULIA_PKG_ERROR"
#: Where the fake juliacall also writes its events (one JSON line each), for subprocesses.
EVENTS_ENV = "FAKE_JULIACALL_EVENTS"


def write_julia(bindir: Path, version: str = "1.11.2", name: str = "julia") -> Path:
    """An executable ``bindir/name`` that says it is Julia ``version`` and logs every other run
    (its arguments, one JSON line each) to ``bindir/name.log``."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / name
    exe.write_text(
        FAKE_JULIA.format(
            python=sys.executable,
            version=version,
            log=str(bindir / f"{name}.log"),
            libjulia=str(bindir / "libjulia.so"),
            bindir=str(bindir),
        )
    )
    exe.chmod(0o755)
    (bindir / "libjulia.so").write_bytes(b"")  # there, as juliacall checks, but no library
    return exe


def runs(exe: Path) -> list[dict]:
    """The logged runs of a fake executable."""
    log = exe.with_name(exe.name + ".log")
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def write_juliacall(root: Path) -> Path:
    """A ``juliacall`` package under ``root`` (put ``root`` first on ``sys.path``)."""
    (root / "juliacall").mkdir(parents=True, exist_ok=True)
    (root / "juliacall" / "__init__.py").write_text(FAKE_JULIACALL)
    return root


class FakeMain:
    """``juliacall.Main``: answers the few expressions the start-up evaluates, records them all."""

    def __init__(self, project: str, record):
        self.project_toml = os.path.join(project, "Project.toml")
        self.record = record
        self.GC = self  # Main.GC.enable(False) at exit

    def enable(self, on):
        self.record({"call": "GC.enable", "value": on})

    def deps(self) -> dict:
        import tomlkit

        try:
            with open(self.project_toml, encoding="utf-8") as f:
                return tomlkit.load(f).get("deps", {})
        except OSError:
            return {}

    def seval(self, code: str):
        self.record({"call": "seval", "code": code})
        if code == 'something(Base.active_project(), "")':
            return self.project_toml
        if code.startswith("using "):
            for name in code[len("using "):].split(", "):
                if name not in self.deps():
                    raise RuntimeError(
                        f"ArgumentError: Package {name} not found in current path.\n- Run ..."
                    )
            return None
        if code.startswith("import Pkg"):  # adds what the Pkg calls name
            if os.environ.get(PKG_ERROR_ENV):
                raise RuntimeError(os.environ[PKG_ERROR_ENV] + "\nStacktrace: ...")
            text = Path(self.project_toml).read_text() if os.path.exists(self.project_toml) else ""
            added = re.findall(r'name="(\w+)", uuid="([-0-9a-f]+)"', code)
            if "[deps]" not in text:
                text += "\n[deps]\n"
            for name, uuid in added:
                text = text.replace("[deps]\n", f'[deps]\n{name} = "{uuid}"\n', 1)
            Path(self.project_toml).write_text(text)
            return None
        if code.startswith("CUDA.functional()"):
            return int(os.environ.get(CUDA_DEVICES_ENV, "0"))
        if code.startswith("CUDA.device!"):
            return None
        raise AssertionError(f"the fake Julia does not know {code!r}")


def _option(name: str, envkey: str | None = None):
    value = sys._xoptions.get("juliacall-" + name)
    if value is not None:
        if value is True:
            raise ValueError(f"-Xjuliacall-{name}: expecting an argument")
        return value
    return os.environ.get(envkey or "PYTHON_JULIACALL_" + name.upper())


def start_fake_juliacall(module: dict) -> None:
    """The body of the fake ``juliacall/__init__.py``: decide exe and project as juliacall does,
    resolve through (the real) juliapkg, record, and provide ``Main``."""
    events: list = []

    def record(event: dict) -> None:
        events.append(event)
        if os.environ.get(EVENTS_ENV):
            with open(os.environ[EVENTS_ENV], "a") as f:
                f.write(json.dumps(event) + "\n")

    start = {
        "call": "import juliacall",
        "torch_imported": "torch" in sys.modules,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("PYTHON_JULIA", "NVIDIA"))},
        "xoptions": {k: v for k, v in sys._xoptions.items() if k.startswith("julia")},
    }
    bindir = _option("home", "PYTHON_JULIACALL_BINDIR")
    project = _option("project")
    exe = _option("exe")
    if exe is None and bindir is not None:
        exe = os.path.join(bindir, "julia")
    if exe is not None and project is not None:
        start["mode"] = "juliacall"
    elif exe is None and project is None:
        import juliapkg

        juliapkg.resolve(julia_args=[])
        exe, project = juliapkg.executable(), juliapkg.project()
        start["mode"] = "juliapkg"
        with open(juliapkg.state.STATE["deps"]) as f:
            start["deps"] = json.load(f)["packages"]
    else:
        raise Exception(
            "Both PYTHON_JULIACALL_PROJECT and PYTHON_JULIACALL_EXE must be set together, "
            "not only one of them."
        )
    start["exe"], start["project"] = exe, project
    record(start)
    module["Main"] = FakeMain(project, record)
    module["EVENTS"] = events
