"""Loading a diffusers pipeline: quiet libraries, device, dtype, scheduler and speed-ups."""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager

from ailusion.devices import device_unavailable
from ailusion.errors import AilusionError, ConfigError

from .settings import SCHEDULERS


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' warnings and loading bars (an explicit
    ``DIFFUSERS_VERBOSITY``/``TRANSFORMERS_VERBOSITY`` still wins)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for name, library in (("TRANSFORMERS", transformers_logging), ("DIFFUSERS", diffusers_logging)):
        if not os.environ.get(f"{name}_VERBOSITY"):
            library.set_verbosity_error()
        library.disable_progress_bar()


def resolve_device(device: str, cpu_offload: bool = False) -> str:
    """``auto`` → cuda, else mps, else cpu. An unavailable device, or CPU offload with no GPU
    to offload from, is a config error."""
    import torch

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if cpu_offload and device == "cpu":
        raise ConfigError("generator.cpu_offload", "offloads idle components from a GPU to the "
                          "CPU, and the device is cpu: turn it off")
    kind = device.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps,
                 "xpu": hasattr(torch, "xpu") and torch.xpu.is_available()}
    if not available[kind]:
        raise device_unavailable("generator.device", device)
    return device


def resolve_dtype(dtype: str, device: str):
    """``auto`` → float16 on CUDA, float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_pipeline(config, source: str, local_only: bool, dtype):
    """Load the text-to-image pipeline at ``source`` (a folder, or a Hub id that
    :func:`~.hub.locate_model` found)."""
    from diffusers import AutoPipelineForText2Image

    kwargs = dict(revision=config.revision, variant=config.variant, local_files_only=local_only,
                  use_safetensors=None if config.allow_pickle else True)
    try:  # diffusers renamed torch_dtype to dtype and warns on the old name
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
        kwargs["dtype"] = dtype
    except ImportError:
        kwargs["torch_dtype"] = dtype
    if not config.safety_checker:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        with _loading_quietly():
            return AutoPipelineForText2Image.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200]
        if "safetensors" in reason and not config.allow_pickle:
            reason += " (pickle weights load only with generator.allow_pickle=true)"
        raise AilusionError(f"generator.model: cannot load {config.model}: {reason}") from None


@contextmanager
def _loading_quietly():
    """While loading, a failure is reported by ailusion's own one line, so diffusers' error logs
    (which precede it or a fallback) and its deprecation notices (some about arguments diffusers
    itself passes to huggingface_hub) would only repeat it or say nothing a user can act on."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    if not os.environ.get("DIFFUSERS_VERBOSITY"):
        diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*deprecated", category=UserWarning)
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def set_scheduler(pipe, name: str | None) -> None:
    """Swap in the scheduler called ``name`` (``None`` keeps the model's own)."""
    if name is None:
        return
    import diffusers

    class_name, extra = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)


def apply_switches(pipe, config, device: str) -> None:
    """Place the pipeline on ``device`` and turn on the speed and memory switches."""
    import torch

    name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
    denoiser = getattr(pipe, name, None)
    if config.attention_slicing:
        pipe.enable_attention_slicing()
    if config.vae_tiling:
        pipe.vae.enable_tiling()
    if config.channels_last and denoiser is not None:
        denoiser.to(memory_format=torch.channels_last)
    if config.cpu_offload:
        try:
            pipe.enable_model_cpu_offload(device=device)
        except ImportError as exc:
            raise AilusionError(f"generator.cpu_offload: {exc}".splitlines()[0]) from None
    else:
        pipe.to(device)
    if config.compile and denoiser is not None:
        setattr(pipe, name, torch.compile(denoiser))
