"""Checks of the ``generator`` node, and the scheduler names, without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ailusion.errors import ConfigError


@dataclass
class StableDiffusionConfig:
    """The keys of ``conf/generator/stable_diffusion.yaml`` (which documents each) and their types."""

    model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    revision: Optional[str] = None
    variant: Optional[str] = None
    scheduler: Optional[str] = None
    seed: int = 0
    num_inference_steps: int = 25
    guidance_scale: Any = 7.5  # a number, or a range [low, high] drawn per image (check_guidance)
    negative_prompt: Optional[str] = None
    height: int = 512
    width: int = 512
    num_images_per_prompt: int = 1
    batch_size: int = 1
    device: str = "auto"
    threads: Optional[int] = None
    dtype: str = "auto"
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    channels_last: bool = False
    compile: bool = False
    allow_pickle: bool = False
    safety_checker: bool = True
    show_step_progress: bool = False

#: ``scheduler`` name → (diffusers class, extra config). Each is built with ``from_config`` from
#: the model's own scheduler config, so the model's betas and timestep spacing are kept.
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),  # PRK warm-up needs 4+ steps
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "kdpm2": ("KDPM2DiscreteScheduler", {}),
    "kdpm2_ancestral": ("KDPM2AncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

DTYPES = ("auto", "float32", "float16", "bfloat16")
SWITCHES = (
    "attention_slicing", "vae_tiling", "cpu_offload", "channels_last", "compile",
    "allow_pickle", "safety_checker", "show_step_progress",
)


def _fail(key: str, message: str):
    raise ConfigError(f"generator.{key}", message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_guidance(scale) -> None:
    """``guidance_scale`` is a number >= 0, or a range ``[low, high]`` with 0 <= low <= high."""
    if _is_number(scale):
        if scale < 0:
            _fail("guidance_scale", f"must be a number of at least 0, got {scale}")
        return
    if isinstance(scale, str) or not hasattr(scale, "__len__"):
        _fail("guidance_scale", f"must be a number of at least 0, or a range [low, high], "
                                f"got {scale}")
    values = list(scale)
    if len(values) != 2 or not all(_is_number(v) for v in values):
        _fail("guidance_scale", f"a range is two numbers [low, high], got {values}")
    if not 0 <= values[0] <= values[1]:
        _fail("guidance_scale", f"a range [low, high] needs 0 <= low <= high, got {values}")


def check_config(config) -> None:
    """Raise :class:`ConfigError` naming the first key of ``config`` whose value is not allowed."""
    if not isinstance(config.model, str) or not config.model.strip():
        _fail("model", "give a Hub id, a local pipeline folder, or `tiny`")
    for key in ("height", "width"):
        value = config[key]
        if not _is_int(value) or value <= 0 or value % 8:
            _fail(key, f"must be a positive multiple of 8, got {value}")
    for key, low in (("seed", 0), ("num_inference_steps", 1), ("num_images_per_prompt", 1),
                     ("batch_size", 1)):
        if not _is_int(config[key]) or config[key] < low:
            _fail(key, f"must be an integer of at least {low}, got {config[key]}")
    check_guidance(config.guidance_scale)
    if config.scheduler is not None and config.scheduler not in SCHEDULERS:
        _fail("scheduler", f"unknown scheduler {config.scheduler!r}; choose one of "
                           f"{', '.join(SCHEDULERS)} (or null for the model's own)")
    if config.dtype not in DTYPES:
        _fail("dtype", f"must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    device = config.device
    if not isinstance(device, str) or device.split(":")[0] not in ("auto", "cpu", "cuda", "mps",
                                                                    "xpu"):
        _fail("device", f"must be auto, cpu, cuda, cuda:N, mps or xpu, got {device!r}")
    if config.threads is not None and (not _is_int(config.threads) or config.threads < 1):
        _fail("threads", f"must be null (every core) or a positive integer, got {config.threads!r}")
    for key in ("negative_prompt", "revision", "variant"):
        if config[key] is not None and not isinstance(config[key], str):
            _fail(key, f"must be a string or null, got {config[key]!r}")
    for key in SWITCHES:
        if not isinstance(config[key], bool):
            _fail(key, f"must be true or false, got {config[key]!r}")
