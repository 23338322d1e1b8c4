"""Julia's start-up through the real code, with a fake ``julia``, ``juliaup`` and ``juliacall``
(tests/julia_fakes.py) under the real juliapkg: the deps file, the environment juliacall sees,
which Julia juliapkg runs and how, and the order of the calls into Julia."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import julia_fakes
import numpy as np
import pytest

from ailusion import devices
from ailusion.errors import AilusionError, ConfigError
from ailusion.plugins.flux_cnn import julia_find, julia_import, julia_packages

ROOT = Path(__file__).resolve().parents[1]


class World:
    """A machine with no Julia but the fakes a test puts there, and a fresh juliapkg project."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.tmp, self.monkeypatch = tmp_path, monkeypatch
        self.project = tmp_path / "julia_env"
        self.downloads: list = []

    def julia(self, version="1.11.2", where="bin", on_path=True) -> Path:
        exe = julia_fakes.write_julia(self.tmp / where, version)
        if on_path:
            self.monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
        return exe

    def online(self) -> None:
        """juliapkg installs packages (through the fake julia, so nothing is fetched)."""
        from juliapkg.state import reset_state

        self.monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "no")
        reset_state()

    def events(self) -> list[dict]:
        return sys.modules["juliacall"].EVENTS

    def sevals(self) -> list[str]:
        return [e["code"] for e in self.events() if e["call"] == "seval"]

    def deps(self) -> dict:
        from juliapkg.state import STATE

        return json.loads(Path(STATE["deps"]).read_text())["packages"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    import juliapkg.find_julia
    from juliapkg.state import reset_state

    for key in list(os.environ):
        if key.startswith(("PYTHON_JULIA", "JULIA")) or key == "CUDA_VISIBLE_DEVICES":
            monkeypatch.delenv(key)
    for key in [k for k in sys._xoptions if k.startswith(("juliacall", "juliapkg"))]:
        monkeypatch.delitem(sys._xoptions, key)
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    monkeypatch.setenv("PYTHON_JULIAPKG_PROJECT", str(tmp_path / "julia_env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no juliaup, no ~/.julia
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    w = World(tmp_path, monkeypatch)

    def no_download(*args, **kwargs):  # juliapkg choosing or installing a Julia of its own
        w.downloads.append(args)
        raise AssertionError("juliapkg would download Julia")

    for name in ("best_julia_version", "install_julia", "ju_best_julia_version"):
        monkeypatch.setattr(juliapkg.find_julia, name, no_download)
    monkeypatch.syspath_prepend(str(julia_fakes.write_juliacall(tmp_path / "fakes")))
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    monkeypatch.setattr(julia_import, "_loaded", {"packages": set(), "gpu": None})
    monkeypatch.setattr(julia_import, "_exit_hook", [None])  # no exit hook for a fake Julia
    monkeypatch.setattr(devices, "_job_gpu", [])
    reset_state()
    environ, xoptions = dict(os.environ), dict(sys._xoptions)
    yield w
    sys.modules.pop("juliacall", None)
    os.environ.clear()  # the start-up sets juliacall's and juliapkg's settings itself
    os.environ.update(environ)
    sys._xoptions.clear()
    sys._xoptions.update(xoptions)
    monkeypatch.undo()
    reset_state()


# --- 1. the GPU asked for after Julia started on the CPU -------------------------------------


def test_a_gpu_request_after_a_cpu_start_adds_cuda_in_the_running_julia(world):
    exe = world.julia()
    world.online()
    julia_import.load(gpu=False)
    start = world.events()[0]
    assert start["call"] == "import juliacall" and start["mode"] == "juliapkg"
    assert start["exe"] == str(exe)
    assert set(start["deps"]) == {"Flux", "AilusionFlux"}  # what juliapkg resolved at the start
    assert world.sevals() == ['something(Base.active_project(), "")', "using AilusionFlux"]

    julia_import.load(gpu=True)
    later = world.sevals()[2:]
    assert later[0] == 'something(Base.active_project(), "")'
    assert later[1].splitlines() == [
        "import Pkg",
        'Pkg.add([Pkg.PackageSpec(name="CUDA", uuid="052768ef-5323-5732-b1bb-66c8b64840ba"), '
        'Pkg.PackageSpec(name="cuDNN", uuid="02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd")]; '
        "preserve=Pkg.PRESERVE_ALL)",
        'Pkg.compat("CUDA", "5, 6")',
        'Pkg.compat("cuDNN", "1, 6")',
        "nothing",
    ]
    assert later[2] == "using CUDA, cuDNN"  # AilusionFlux is loaded already
    # the next process starts with them: they are in juliapkg's deps file
    assert set(world.deps()) == {"Flux", "AilusionFlux", "CUDA", "cuDNN"}
    # juliapkg resolved once, at the start: one install script, no second resolution
    installs = [r for r in julia_fakes.runs(exe) if "Pkg.Registry.update()" in r["argv"][-1]]
    assert len(installs) == 1 and "CUDA" not in installs[0]["argv"][-1]

    julia_import.load(gpu=True)  # a third job: nothing more to add or load
    assert len(world.sevals()) == 6 and world.sevals()[-1] == 'something(Base.active_project(), "")'


def test_a_gpu_request_offline_without_cuda_installed_fails_with_one_line(world):
    world.julia()
    world.online()
    julia_import.load(gpu=False)
    world.monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    import juliapkg

    juliapkg.offline(True)
    with pytest.raises(AilusionError) as error:
        julia_import.load(gpu=True)
    assert str(error.value) == (
        f"model.backend=julia: CUDA, cuDNN missing from the Julia project "
        f"{world.project / 'Project.toml'}, and PYTHON_JULIAPKG_OFFLINE=yes forbids installing "
        "them: run once with PYTHON_JULIAPKG_OFFLINE=no (needs internet)"
    )
    assert not any(code.startswith(("import Pkg", "using CUDA")) for code in world.sevals())


def test_pkg_failing_to_add_cuda_is_one_line_naming_what_was_loaded(world):
    world.julia()
    world.online()
    julia_import.load(gpu=False)
    world.monkeypatch.setenv(
        julia_fakes.PKG_ERROR_ENV,
        "Unsatisfiable requirements detected for package CUDA [052768ef]:",
    )
    with pytest.raises(AilusionError) as error:
        julia_import.load(gpu=True)
    assert str(error.value) == (
        "model.backend=julia: Julia could not load CUDA, cuDNN, AilusionFlux: "
        "Unsatisfiable requirements detected for package CUDA [052768ef]:"
    )
    assert error.value.__context__ is None  # Julia's exception stays on the Julia thread
    assert "using CUDA, cuDNN" not in world.sevals()


def test_the_first_start_on_the_gpu_resolves_cuda_with_juliapkg(world):
    world.julia()
    world.online()
    julia_import.load(gpu=True)
    assert set(world.events()[0]["deps"]) == {"Flux", "AilusionFlux", "CUDA", "cuDNN"}
    assert world.sevals() == [
        'something(Base.active_project(), "")',
        "using CUDA, cuDNN, AilusionFlux",
    ]


# --- 2. every way of naming Julia --------------------------------------------------------------

NAMINGS = {
    "PYTHON_JULIACALL_EXE": lambda exe: ("env", "PYTHON_JULIACALL_EXE", str(exe)),
    "-X juliacall-exe": lambda exe: ("x", "juliacall-exe", str(exe)),
    "PYTHON_JULIACALL_BINDIR": lambda exe: ("env", "PYTHON_JULIACALL_BINDIR", str(exe.parent)),
    "-X juliacall-home": lambda exe: ("x", "juliacall-home", str(exe.parent)),
    "PYTHON_JULIAPKG_EXE": lambda exe: ("env", "PYTHON_JULIAPKG_EXE", str(exe)),
    "-X juliapkg-exe": lambda exe: ("x", "juliapkg-exe", str(exe)),
}


def name_julia(world, naming: str, exe: Path) -> None:
    kind, key, value = NAMINGS[naming](exe)
    if kind == "env":
        world.monkeypatch.setenv(key, value)
    else:
        world.monkeypatch.setitem(sys._xoptions, key, value)


@pytest.mark.parametrize("naming", NAMINGS)
def test_every_way_of_naming_julia_starts_that_julia(world, naming):
    decoy = world.julia(where="path")  # another Julia on PATH, never to be used
    named = world.julia(where="named/bin", on_path=False)
    name_julia(world, naming, named)
    world.online()
    assert julia_import.find_julia() == str(named)
    julia_import.load()
    start = world.events()[0]
    assert start["mode"] == "juliapkg" and start["exe"] == str(named)
    # juliacall is left nothing it would refuse without a project (l.193-221)
    assert not {"PYTHON_JULIACALL_EXE", "PYTHON_JULIACALL_BINDIR"} & set(start["env"])
    assert not {"juliacall-exe", "juliacall-home"} & set(start["xoptions"])
    assert julia_fakes.runs(named) and not julia_fakes.runs(decoy)


REAL_JULIACALL = """
from ailusion.errors import AilusionError
from ailusion.plugins.flux_cnn import julia_import
try:
    julia_import.load()
except AilusionError as exc:
    print(exc)
"""


@pytest.mark.parametrize("naming", [*NAMINGS, "PYTHON_JULIACALL_PROJECT alone"])
def test_the_real_juliacall_accepts_what_the_start_up_leaves_it(world, naming):
    # The installed juliacall itself, in a process of its own: its option checks (l.158-221)
    # pass, juliapkg resolves with the named Julia, and it stops only where it opens libjulia.
    named = world.julia(where="named/bin", on_path=naming == "PYTHON_JULIACALL_PROJECT alone")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no fake juliacall
    xoptions = []
    if naming in NAMINGS:
        kind, key, value = NAMINGS[naming](named)
        if kind == "env":
            env[key] = value
        else:
            xoptions = ["-X", f"{key}={value}"]
    else:
        (world.tmp / "mine").mkdir()
        env["PYTHON_JULIACALL_PROJECT"] = str(world.tmp / "mine")
    out = subprocess.run(
        [sys.executable, *xoptions, "-c", REAL_JULIACALL], env=env, cwd=world.tmp,
        capture_output=True, text=True, timeout=120, check=True,
    )
    lib = named.parent / "libjulia.so"
    assert out.stdout.splitlines()[-1].startswith(
        f"model.backend=julia: Julia could not load AilusionFlux: {lib}: "
    ), out.stdout + out.stderr
    assert "must be set together" not in out.stdout + out.stderr
    if naming in NAMINGS:
        assert any(run["argv"][-1].startswith("using Libdl") for run in julia_fakes.runs(named))


def test_a_julia_juliaup_installed_off_path_is_found(world):
    from juliapkg.install_julia import get_short_arch

    exe = world.julia(where="home/.julia/juliaup/julia-1.11.2/bin", on_path=False)
    (world.tmp / "home" / ".julia" / "juliaup" / "juliaup.json").write_text(json.dumps(
        {"InstalledVersions": {f"1.11.2+0.{get_short_arch()}.linux.gnu": {"Path": "julia-1.11.2"}}}
    ))
    assert julia_import.find_julia() == str(exe)
    on_path = world.julia(where="path")
    assert julia_import.find_julia() == str(on_path)  # juliaup's launcher is on PATH normally


def test_a_julia_named_with_its_project_is_left_to_juliacall(world, tmp_path):
    exe = world.julia(on_path=False)
    (tmp_path / "mine").mkdir()
    world.monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(exe))
    world.monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(tmp_path / "mine"))
    with pytest.raises(AilusionError) as error:
        julia_import.load()
    start = world.events()[0]
    assert start["mode"] == "juliacall" and start["env"]["PYTHON_JULIACALL_EXE"] == str(exe)
    assert "PYTHON_JULIAPKG_EXE" not in start["env"]
    assert str(error.value).startswith(
        f"model.backend=julia: AilusionFlux missing from the Julia project "
        f"{tmp_path / 'mine' / 'Project.toml'} (PYTHON_JULIACALL_PROJECT, used as it is)"
    )


def test_a_project_given_to_juliacall_alone_gets_the_julia_found(world, tmp_path):
    exe = world.julia()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "Project.toml").write_text(
        '[deps]\nAilusionFlux = "b79c742b-68b4-4cd6-899c-753a7d304219"\n'
    )
    world.monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", str(tmp_path / "mine"))
    julia_import.load()  # juliacall alone would raise "Both ... must be set together"
    start = world.events()[0]
    assert start["mode"] == "juliacall" and start["exe"] == str(exe)
    assert start["project"] == str(tmp_path / "mine")
    assert world.sevals()[-1] == "using AilusionFlux"


@pytest.mark.parametrize("naming", NAMINGS)
def test_a_named_path_that_is_no_julia_fails_with_the_setting_named(world, naming):
    world.julia(where="path")  # a working Julia on PATH does not stand in for the named one
    name_julia(world, naming, world.tmp / "nowhere" / "julia")
    source, value = julia_find.named_julia().source, julia_find.named_julia().value
    with pytest.raises(AilusionError) as error:
        julia_import.load()
    assert str(error.value) == (
        f"model.backend=julia: {source}={value} names no Julia executable; fix or unset it, "
        "or use model.backend=torch"
    )
    assert "juliacall" not in sys.modules


def auto_notices(world, caplog) -> list[str]:
    """The notices of a ``model.backend=auto`` model set up in ``world``; it runs the twin."""
    from omegaconf import OmegaConf

    from ailusion.plugins.flux_cnn import model

    world.monkeypatch.setattr(model, "_noticed", set())
    config = OmegaConf.load(ROOT / "conf" / "model" / "flux_cnn.yaml")
    config.device = "cpu"
    cnn = model.FluxCNN(config, type("Context", (), {"run_dir": world.tmp})())
    with caplog.at_level(logging.WARNING, logger="ailusion.plugins.flux_cnn"):
        cnn.setup((3, 8, 8))
    assert cnn.backend.name == "torch"
    return [r.getMessage() for r in caplog.records]


def test_auto_says_why_it_runs_the_twin_when_the_named_julia_is_missing(world, caplog):
    world.monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(world.tmp / "nowhere" / "julia"))
    assert auto_notices(world, caplog) == [
        f"model.backend=auto: PYTHON_JULIACALL_EXE={world.tmp / 'nowhere' / 'julia'} names no "
        "Julia executable, running the PyTorch twin of the Flux model"
    ]


def test_auto_says_why_it_runs_the_twin_when_the_named_julia_fails(world, caplog):
    exe = world.julia(version="1.9.4", on_path=False)
    world.monkeypatch.setitem(sys._xoptions, "juliacall-exe", str(exe))
    [notice] = auto_notices(world, caplog)
    assert notice.startswith(
        f"model.backend=auto: running the PyTorch twin (model.backend=julia: found Julia 1.9.4 "
        f"at {exe}, need ≥ 1.10.3, < "
    )


# --- 4. install_julia=false means no download ------------------------------------------------


def write_juliaup(world) -> Path:
    return julia_fakes.write_julia(world.tmp / "juliaup-bin", name="juliaup")


def test_a_julia_too_old_is_refused_without_downloading_another(world):
    exe = world.julia(version="1.9.4")
    juliaup = write_juliaup(world)
    world.monkeypatch.setenv("PATH", f"{juliaup.parent}{os.pathsep}{os.environ['PATH']}")
    world.online()
    with pytest.raises(AilusionError) as error:
        julia_import.load(install=False)
    # juliacall's own juliapkg.json asks for ^1.10.3 (and < 1.12 with an OpenSSL before 3.5)
    need = julia_find._describe(julia_find.required_julia())
    assert need.startswith("≥ 1.10.3, < ")
    assert str(error.value) == (
        f"model.backend=julia: found Julia 1.9.4 at {exe}, need {need}; install a "
        "newer Julia (https://julialang.org/install) or set model.install_julia=true"
    )
    assert "juliacall" not in sys.modules
    assert not julia_fakes.runs(juliaup) and not world.downloads


def test_with_juliaup_present_the_julia_found_is_used_and_nothing_installed(world):
    exe = world.julia(version="1.10.5")
    juliaup = write_juliaup(world)
    world.monkeypatch.setenv("PATH", f"{juliaup.parent}{os.pathsep}{os.environ['PATH']}")
    world.online()
    julia_import.load(install=False)
    assert world.events()[0]["exe"] == str(exe)
    assert world.events()[0]["env"]["PYTHON_JULIAPKG_EXE"] == str(exe)
    assert not julia_fakes.runs(juliaup) and not world.downloads  # no `juliaup add`


# --- 5. juliapkg ≥ 0.1.18 ----------------------------------------------------------------------


def test_a_juliapkg_older_than_0_1_18_is_refused(world, monkeypatch):
    world.julia()
    monkeypatch.setattr(julia_find.metadata, "version", lambda name: "0.1.17")
    with pytest.raises(AilusionError) as error:
        julia_import.load()
    assert str(error.value) == (
        "model.backend=julia: juliapkg 0.1.17 is too old (before 0.1.18 it ignores the Julia it "
        "is given); pip install 'juliapkg>=0.1.18'"
    )
    assert "juliacall" not in sys.modules
    monkeypatch.setattr(julia_find.metadata, "version", lambda name: "0.1.18")
    julia_find.check_juliapkg()


def test_the_install_requires_the_juliapkg_and_juliacall_this_code_needs():
    import tomlkit

    deps = tomlkit.parse((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "juliapkg>=0.1.18" in deps
    assert "juliacall>=0.9.22" in deps  # _jl_call_nogil (PythonCall 0.9.22, #535)


def test_the_handed_over_julia_reaches_the_state_juliapkg_resolves_with(world):
    import juliapkg.deps
    import juliapkg.find_julia

    exe = world.julia(on_path=False)
    julia_find.hand_to_juliapkg(str(exe))
    # the STATE dict the resolver and find_julia imported is the one reset_state() filled
    assert juliapkg.deps.STATE["override_executable"] == str(exe)
    assert juliapkg.find_julia.STATE["override_executable"] == str(exe)


# --- 7. hidden GPUs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listed, visible",
    [(None, True), ("", False), ("-1", False), (" -1 ", False), ("0", True), ("0,-1,1", True),
     ("-1,0", False), ("GPU-8e6a", True)],
)
def test_cuda_visible_devices_can_hide_every_gpu(monkeypatch, listed, visible):
    monkeypatch.setattr(devices, "has_nvidia_driver", lambda: True)
    environ = {} if listed is None else {"CUDA_VISIBLE_DEVICES": listed}
    assert devices.has_visible_gpu(environ) is visible
    monkeypatch.setattr(devices, "has_nvidia_driver", lambda: False)
    assert devices.has_visible_gpu(environ) is False


def test_auto_with_hidden_gpus_starts_julia_without_cuda(monkeypatch):
    from ailusion.plugins.flux_cnn import julia_backend

    asked = []

    def stop(gpu, install):
        asked.append(gpu)
        raise AilusionError("stopped")

    monkeypatch.setattr(devices, "has_nvidia_driver", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    monkeypatch.setattr(julia_import, "load", lambda gpu, install: stop(gpu, install))
    with pytest.raises(AilusionError):
        julia_backend.JuliaBackend({}, None, device="auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(AilusionError):
        julia_backend.JuliaBackend({}, None, device="auto")
    assert asked == [False, True]


# --- 8. one GPU per job in one process ---------------------------------------------------------


def test_each_job_of_a_basic_sweep_selects_its_gpu_in_julia(world):
    world.julia()
    world.online()
    world.monkeypatch.setenv(julia_fakes.CUDA_DEVICES_ENV, "2")  # CUDA.jl sees two GPUs
    environ = {"CUDA_VISIBLE_DEVICES": "0,1"}
    selected = []
    for job in range(3):
        devices.assign_job_gpu(job, environ)
        julia_import.load(gpu=True)
        selected.append([c for c in world.sevals() if c.startswith("CUDA.device!")])
    assert selected == [["CUDA.device!(0)"], ["CUDA.device!(0)", "CUDA.device!(1)"],
                        ["CUDA.device!(0)", "CUDA.device!(1)", "CUDA.device!(0)"]]


def test_without_gpu_per_job_julia_keeps_cudas_own_device(world):
    world.julia()
    world.online()
    world.monkeypatch.setenv(julia_fakes.CUDA_DEVICES_ENV, "2")
    julia_import.load(gpu=True)
    assert not [c for c in world.sevals() if c.startswith("CUDA.device!")]


# --- 9. an editable install reached through a symlink ------------------------------------------


def test_a_checkout_reached_through_a_symlink_gives_juliapkg_one_path(world, tmp_path):
    import juliapkg.deps

    link = tmp_path / "checkout"
    link.symlink_to(ROOT, target_is_directory=True)
    json_file = link / "plugins" / "flux_cnn" / "juliapkg.json"
    world.monkeypatch.setattr(julia_packages, "JULIAPKG_JSON", json_file)
    julia_import._require_packages(gpu=False)
    # juliapkg finds the same file through the editable install's (unresolved) path
    world.monkeypatch.setattr(
        juliapkg.deps, "deps_files", lambda: [juliapkg.deps.cur_deps_file(), str(json_file)]
    )
    compat, packages = juliapkg.deps.find_requirements()  # raised "'path' entries are not unique"
    path = {p.name: p.path for p in packages}["AilusionFlux"]
    assert path == str(link / "julia" / "AilusionFlux")


# --- 10. the GIL -------------------------------------------------------------------------------


class FakeFluxFunction:
    def __init__(self, calls, result=None):
        self.calls, self.result = calls, result

    def __call__(self, *args):
        self.calls.append(("with the GIL", args))
        return self.result

    def _jl_call_nogil(self, *args):
        self.calls.append(("nogil", args))
        return self.result


class FakeLogits:
    def __init__(self, array):
        self.array = array

    def to_numpy(self):
        return self.array


def test_the_forward_pass_runs_with_the_gil_released(monkeypatch):
    from ailusion.plugins.flux_cnn import julia_backend

    calls: list = []
    flux = type("AilusionFlux", (), {})()
    flux.build_model = lambda *args, **kwargs: "model"
    flux.device_name = lambda model: "CPUDevice"
    flux.forward = FakeFluxFunction(calls, FakeLogits(np.arange(6, dtype=np.float32).reshape(3, 2)))
    main = type("Main", (), {"AilusionFlux": flux})()
    monkeypatch.setattr(julia_import, "load", lambda gpu, install: main)
    from ailusion.plugins.flux_cnn.weights import Architecture

    arch = Architecture(kernel_size=3, out_channels=2, activation="relu", stride=1, pad=0,
                        pooling=None, pool_size=2, num_outputs=3)
    tensors = {name: np.zeros(1, dtype=np.float32) for name in arch.tensor_names()}
    backend = julia_backend.JuliaBackend(tensors, arch, device="cpu")
    batch = np.zeros((2, 3, 4, 5), dtype=np.float32)
    logits = backend.forward(batch)
    assert [how for how, _ in calls] == ["nogil"]
    model, whcn = calls[0][1]
    assert model == "model" and whcn.shape == (5, 4, 3, 2) and np.shares_memory(whcn, batch)
    np.testing.assert_array_equal(logits, np.arange(6, dtype=np.float32).reshape(3, 2).T)


# --- 11. juliacall before torch in the test session, TF32 off where parity is checked ---------


def pytest_session(world, *args) -> list[dict]:
    events = world.tmp / "events.jsonl"
    env = dict(os.environ, PYTHONPATH=str(world.tmp / "fakes"))
    env[julia_fakes.EVENTS_ENV] = str(events)
    env.pop("NVIDIA_TF32_OVERRIDE", None)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", *args,
         "tests/test_julia_flux.py", "tests/test_generator_tiny.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    return [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []


def test_the_test_session_imports_juliacall_before_torch_where_julia_is(world):
    world.julia()
    events = pytest_session(world)
    start = events[0]
    assert start["call"] == "import juliacall" and start["torch_imported"] is False
    assert start["env"]["NVIDIA_TF32_OVERRIDE"] == "0"  # no TF32 in cuDNN or cuBLAS, either side
    assert len([e for e in events if e["call"] == "import juliacall"]) == 1


def test_the_test_session_leaves_julia_alone_when_its_tests_are_deselected(world):
    world.julia()
    assert pytest_session(world, "-m", "not julia") == []


@pytest.mark.parametrize(
    "markexpr, args, starts",
    [("", [], True), ("julia", ["tests"], True), ("not julia", [], False),
     ("slow", [], False), ("julia or slow", [], True), ("", ["tests/test_prompts.py"], False),
     ("", ["tests/test_prompts.py", "tests/test_julia_flux.py::test_x"], True)],
)
def test_julia_starts_first_only_when_its_tests_may_run(world, markexpr, args, starts):
    import conftest

    world.julia()
    started = []
    world.monkeypatch.setattr(julia_import, "load", lambda: started.append(True))
    conftest.start_julia_first(markexpr, args)
    assert started == ([True] if starts else [])


def test_the_twin_runs_without_tf32_where_parity_is_checked(no_tf32):
    import torch

    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert os.environ["NVIDIA_TF32_OVERRIDE"] == "0"


# --- 3. CUDA.jl 5 and 6 ------------------------------------------------------------------------


def test_cuda_5_and_6_are_allowed_with_a_flux_that_accepts_both():
    import tomlkit
    from juliapkg.compat import Compat, Version

    def admits(spec: str, version: str) -> bool:
        return Version.parse(version) in Compat.parse(spec)

    cuda, cudnn = (julia_packages.GPU_PACKAGES[n]["version"] for n in ("CUDA", "cuDNN"))
    assert admits(cuda, "5.9.0") and admits(cuda, "6.3.0") and not admits(cuda, "7.0.0")
    assert admits(cudnn, "1.4.0") and admits(cudnn, "6.3.0") and not admits(cudnn, "2.0.0")
    flux = json.loads(julia_find.JULIAPKG_JSON.read_text())["packages"]["Flux"]["version"]
    toml = (ROOT / "julia" / "AilusionFlux" / "Project.toml").read_text()
    project = tomlkit.parse(toml)["compat"]["Flux"]
    for spec in (flux, project):  # Flux 0.16.10 is the first with CUDA = "5, 6", cuDNN = "1, 6"
        assert admits(spec, "0.16.10") and admits(spec, "0.16.11")
        assert not admits(spec, "0.16.9") and not admits(spec, "0.17.0")


# --- the device rule: cuda without a GPU is an error, for the generator and the model ---------


def test_model_device_cuda_without_a_gpu_is_the_generators_error(monkeypatch):
    import torch

    from ailusion.plugins.flux_cnn import julia_backend, torch_backend
    from ailusion.plugins.stable_diffusion.loading import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as generator:
        resolve_device("cuda")
    with pytest.raises(ConfigError) as twin:
        torch_backend.torch_device("cuda")
    monkeypatch.setattr(devices, "has_nvidia_driver", lambda: False)
    monkeypatch.setattr(julia_import, "load", lambda **kw: pytest.fail("Julia started"))
    with pytest.raises(ConfigError) as flux:
        julia_backend.JuliaBackend({}, None, device="cuda")
    assert str(generator.value) == "generator.device: cuda is not available here; use auto or cpu"
    assert str(twin.value) == str(flux.value) == re.sub(
        "^generator", "model", str(generator.value)
    )
    assert torch_backend.torch_device("auto") == "cpu"  # auto still falls back
