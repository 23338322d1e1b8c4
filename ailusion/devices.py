"""Which devices and processes a job may use: one GPU per job, and Julia's one-process rule.

Both are decided before torch or juliacall is imported, since CUDA reads ``CUDA_VISIBLE_DEVICES``
once, when it first initialises, and Julia's runtime cannot survive a ``fork``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Mapping, MutableMapping

from .errors import AilusionError, ConfigError

#: Where the GPUs first visible to this process are remembered, so that later jobs run in the same
#: process (or in workers that inherit its environment) still pick among all of them.
ALL_GPUS_ENV = "AILUSION_ALL_GPUS"
_job_gpu: list[int] = []  # the number of the job that was last given a GPU


def visible_gpus(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (no torch)."""
    remembered = environ.get(ALL_GPUS_ENV)
    if remembered is not None:
        return [gpu for gpu in remembered.split(",") if gpu]
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return listed_gpus(listed)
    nvidia = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(nvidia.iterdir())))] if nvidia.is_dir() else []


def listed_gpus(listed: str) -> list[str]:
    """The devices a ``CUDA_VISIBLE_DEVICES`` value makes visible: CUDA reads the list up to
    the first invalid entry, so ``""``, ``-1`` and ``0,-1,1`` (just GPU 0) hide GPUs."""
    gpus = []
    for entry in (gpu.strip() for gpu in listed.split(",")):
        if not entry or entry.startswith("-"):
            break
        gpus.append(entry)
    return gpus


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA driver is installed, known without loading CUDA."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def has_visible_gpu(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process may use an NVIDIA GPU: a driver, and a ``CUDA_VISIBLE_DEVICES`` (if
    set) that lists one. Known without loading CUDA, so ``auto`` does not fetch CUDA.jl for a
    GPU it may not use."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    return has_nvidia_driver() and (listed is None or bool(listed_gpus(listed)))


def device_unavailable(key: str, device: str) -> ConfigError:
    """The one error for an explicitly asked device that is not there (``generator.device``,
    ``model.device``): as torch does, asking for ``cuda`` without one is an error, and only
    ``auto`` falls back to the CPU."""
    return ConfigError(key, f"{device} is not available here; use auto or cpu")


def assign_job_gpu(job_num: int, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Give job ``job_num`` of a sweep its own GPU: number ``job_num`` modulo the visible GPUs.

    Sets ``CUDA_VISIBLE_DEVICES`` to that one GPU and returns it; returns ``None`` (and changes
    nothing) on a machine without GPUs. Must run before CUDA initialises: in a process where it
    already has (jobs of the basic launcher share one process), the job selects its device with
    ``torch.cuda.set_device`` (and, with the Julia backend, ``CUDA.device!``) among those CUDA
    already sees (:func:`job_gpu_ordinal`).
    """
    gpus = visible_gpus(environ)
    if not gpus:
        return None
    environ.setdefault(ALL_GPUS_ENV, ",".join(gpus))
    chosen = gpus[job_num % len(gpus)]
    _job_gpu[:] = [job_num]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.set_device(job_gpu_ordinal(torch.cuda.device_count()))
        return chosen
    environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen


def job_gpu_ordinal(count: int) -> int | None:
    """The device number a runtime whose CUDA started earlier in this process (and so sees
    ``count`` GPUs) gives the current job; ``None`` when no job was given a GPU. torch
    (``torch.cuda.set_device``) and CUDA.jl (``CUDA.device!``) both use it."""
    if not _job_gpu or count < 1:
        return None
    return _job_gpu[0] % count


def setup_job_devices(config, job_num: int) -> str | None:
    """Apply the top-level ``gpu_per_job`` option for job ``job_num``; see :func:`assign_job_gpu`."""
    if not config.get("gpu_per_job"):
        return None
    return assign_job_gpu(job_num)


# ---------------------------------------------------------------------------------------------
# Julia: juliacall starts one Julia runtime per process, and a forked copy of a process that
# started it crashes or hangs on first use. Launchers that fork after Julia started must fail.
# ---------------------------------------------------------------------------------------------

_julia_pid: int | None = None  # the process that started Julia, inherited by forked children


def claim_julia_process() -> None:
    """Call right before ``import juliacall``: record this process as the one running Julia, or
    fail with one line if it is a forked child of a process that already started Julia."""
    global _julia_pid
    if _julia_pid is not None and _julia_pid != os.getpid():
        raise AilusionError(
            f"model.backend=julia: this job (pid {os.getpid()}) was forked from pid {_julia_pid} "
            "after it started Julia, which juliacall cannot survive; run sweeps with the basic, "
            "joblib or submitit_local launcher (hydra/launcher=joblib), which start fresh processes"
        )
    _julia_pid = os.getpid()


def _after_fork_in_child() -> None:
    # juliacall starts Julia when imported: a child forked after that has an unusable Julia even
    # if the Julia backend never called claim_julia_process().
    global _julia_pid
    if _julia_pid is None and "juliacall" in sys.modules:
        _julia_pid = os.getppid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
