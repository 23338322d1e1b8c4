"""Starting Julia: finding it, failing fast without it, juliacall's defaults, the Julia thread."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ailusion.errors import AilusionError
from ailusion.plugins.flux_cnn import julia_find, julia_import, julia_thread

ROOT = Path(__file__).resolve().parents[1]

NO_JULIA_SCRIPT = """
import json, os, sys, time
started = time.perf_counter()
from ailusion.errors import AilusionError
from ailusion.plugins.flux_cnn import julia_import
try:
    julia_import.load()
    error = None
except AilusionError as exc:
    error = str(exc)
print(json.dumps({
    "error": error, "seconds": time.perf_counter() - started,
    "juliacall_imported": "juliacall" in sys.modules,
    "offline": os.environ.get("PYTHON_JULIAPKG_OFFLINE"),
}))
"""


def no_julia_env(tmp_path) -> dict:
    """An environment with no Julia to find: none on PATH, a fresh home and juliapkg project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON_JULIA", "JULIA"))}
    env.update(
        HOME=str(tmp_path),
        PATH=os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin",
        PYTHON_JULIAPKG_PROJECT=str(tmp_path / "julia_env"),
    )
    return env


def test_no_julia_fails_in_under_5_seconds_with_one_line(tmp_path):
    env = no_julia_env(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", NO_JULIA_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["error"] == julia_import.NO_JULIA and "\n" not in result["error"]
    assert result["seconds"] < 5
    assert not result["juliacall_imported"] and result["offline"] == "yes"


@pytest.mark.slow
def test_the_cli_with_backend_julia_and_no_julia_exits_at_once(tmp_path):
    env = no_julia_env(tmp_path) | {
        "AILUSION_CACHE": os.environ.get("AILUSION_CACHE", str(tmp_path))
    }
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ailusion",
            "generator=tiny",
            "model.backend=julia",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.perf_counter() - started < 15  # the interpreter, Hydra and the config, then out
    assert out.returncode == 1
    assert f"ailusion: error: {julia_import.NO_JULIA}" in out.stderr.splitlines()
    assert not (tmp_path / "run" / "model_weights.safetensors").exists()


def test_find_julia_honours_python_juliacall_exe_and_path(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "julia"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("PYTHON_JULIACALL_BINDIR", raising=False)
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", str(fake))
    assert julia_import.find_julia() == str(fake)
    monkeypatch.delenv("PYTHON_JULIACALL_EXE")
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    assert julia_import.find_julia() == str(fake)


def test_defaults_are_one_thread_and_python_signals_unless_set(monkeypatch):
    for key in ("PYTHON_JULIACALL_THREADS", "PYTHON_JULIACALL_HANDLE_SIGNALS", "JULIA_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    julia_import.set_defaults()
    assert os.environ["PYTHON_JULIACALL_THREADS"] == "1"
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "no"
    monkeypatch.setenv("PYTHON_JULIACALL_THREADS", "auto")
    monkeypatch.delenv("PYTHON_JULIACALL_HANDLE_SIGNALS")
    julia_import.set_defaults()
    assert os.environ["PYTHON_JULIACALL_THREADS"] == "auto"
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"  # juliacall needs it with threads


def test_julia_packages_point_at_the_package_and_add_cuda_only_for_the_gpu():
    cpu = julia_import.julia_packages()
    assert set(cpu) == {"Flux", "AilusionFlux"}
    assert Path(cpu["AilusionFlux"]["path"]) == ROOT / "julia" / "AilusionFlux"
    assert cpu["AilusionFlux"]["dev"] is True
    gpu = julia_import.julia_packages(gpu=True)
    assert set(gpu) == {"Flux", "AilusionFlux", "CUDA", "cuDNN"}
    assert gpu["CUDA"]["uuid"] == "052768ef-5323-5732-b1bb-66c8b64840ba"
    assert gpu["cuDNN"]["uuid"] == "02a925ec-e4fe-4b08-9a7e-0d78e3d38ccd"


def test_torch_imported_first_is_warned_about(monkeypatch, caplog):
    import torch  # noqa: F401  (already imported by the other tests; made sure of here)

    def stop(gpu):
        raise RuntimeError("stopped before juliacall\nsecond line")

    monkeypatch.setattr(julia_import, "find_julia", lambda: "/opt/julia/bin/julia")
    monkeypatch.setattr(julia_import.julia_find, "check_version", lambda exe: None)
    monkeypatch.setattr(julia_import.julia_find, "hand_to_juliapkg", lambda exe: None)
    monkeypatch.setattr(julia_import, "_require_packages", stop)
    monkeypatch.setattr(julia_import, "claim_julia_process", lambda: None)
    monkeypatch.setattr(julia_import, "set_defaults", lambda: None)
    with caplog.at_level(logging.WARNING, logger="ailusion.plugins.flux_cnn"):
        with pytest.raises(AilusionError) as error:
            julia_import.load()
    assert str(error.value) == (
        "model.backend=julia: Julia could not load AilusionFlux: stopped before juliacall"
    )
    assert [r.getMessage() for r in caplog.records] == [
        "torch was imported before juliacall, which can crash Julia: import juliacall first"
    ]


def test_every_julia_call_runs_on_one_thread():
    names = {julia_thread.call(lambda: threading.current_thread().name) for _ in range(3)}
    names |= {julia_thread.call(julia_thread.call, lambda: threading.current_thread().name)}
    assert names == {"ailusion-julia"}
    with pytest.raises(ZeroDivisionError):
        julia_thread.call(lambda: 1 / 0)


def test_python_juliacall_exe_alone_is_handed_to_juliapkg(monkeypatch):
    from juliapkg.state import STATE

    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/opt/julia/bin/julia")
    monkeypatch.delenv("PYTHON_JULIACALL_PROJECT", raising=False)
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", "")  # so that undo() removes what is set below
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE")
    try:
        julia_find.hand_to_juliapkg("/opt/julia/bin/julia")
        assert "PYTHON_JULIACALL_EXE" not in os.environ  # juliacall would refuse it alone
        assert os.environ["PYTHON_JULIAPKG_EXE"] == "/opt/julia/bin/julia"
        assert STATE["override_executable"] == "/opt/julia/bin/julia"
    finally:
        monkeypatch.undo()
        from juliapkg.state import reset_state

        reset_state()
    assert STATE["override_executable"] == os.environ.get("PYTHON_JULIAPKG_EXE")  # restored


def test_python_juliacall_exe_with_a_project_is_left_to_juliacall(monkeypatch):
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", "/opt/julia/bin/julia")
    monkeypatch.setenv("PYTHON_JULIACALL_PROJECT", "/opt/project")
    assert julia_find.juliacall_owns_project()
    monkeypatch.delenv("PYTHON_JULIACALL_PROJECT")
    assert not julia_find.juliacall_owns_project()


def test_the_packages_are_declared_to_juliapkg_once(tmp_path, monkeypatch):
    from juliapkg.state import STATE

    deps = tmp_path / "pyjuliapkg" / "juliapkg.json"
    monkeypatch.setitem(STATE, "deps", str(deps))
    monkeypatch.setitem(STATE, "resolved", STATE["resolved"])
    julia_import._require_packages(gpu=False)
    declared = json.loads(deps.read_text())["packages"]
    assert declared["AilusionFlux"] == {
        "uuid": "b79c742b-68b4-4cd6-899c-753a7d304219",
        "dev": True,
        "path": str(ROOT / "julia" / "AilusionFlux"),
    }
    assert set(declared) == {"Flux", "AilusionFlux"}
    written = deps.stat().st_mtime_ns
    julia_import._require_packages(gpu=False)
    assert deps.stat().st_mtime_ns == written  # nothing changed, nothing rewritten
    julia_import._require_packages(gpu=True)
    assert set(json.loads(deps.read_text())["packages"]) == {
        "Flux",
        "AilusionFlux",
        "CUDA",
        "cuDNN",
    }
