"""Where prompts come from: the ``prompts`` list, or ``prompts_file``."""

from __future__ import annotations

from omegaconf import DictConfig

from .stages import Prompt


def load_prompts(config: DictConfig) -> list[Prompt]:
    """Return the run's prompts with ``prompt_prefix`` and ``prompt_suffix`` applied."""
    prompts = [Prompt(text=str(text)) for text in config.prompts or []]
    prefix, suffix = config.get("prompt_prefix") or "", config.get("prompt_suffix") or ""
    return [Prompt(prefix + p.text + suffix, p.negative_prompt, p.seed) for p in prompts]
