"""The schema of the top-level config, checked by Hydra when it composes a config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class AilusionConfig:
    """Keys of ``conf/config.yaml``; each stage's own node is checked by its plugin."""

    generator: Any = MISSING
    preprocessor: Any = MISSING
    model: Any = MISSING
    prompts: List[str] = field(default_factory=list)
    prompts_file: Optional[str] = None
    prompt_prefix: str = ""
    prompt_suffix: str = ""
    shard: int = 0
    num_shards: int = 1
    gpu_per_job: bool = False
    png_compress_level: int = 6
    png_strategy: str = "rle"
    png_encoder: str = "pillow"
    progress: bool = True
    train: Any = None  # train=default: train on the run's images once it is made
    eval_dir: Optional[str] = None  # real images (DIR/CLASS/*.png) to evaluate the training on


def register_configs() -> None:
    """Store the schema as ``ailusion_schema`` for the defaults list of ``config.yaml``."""
    ConfigStore.instance().store(name="ailusion_schema", node=AilusionConfig)
