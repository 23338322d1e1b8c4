"""Run a pipeline from Python, with the same configs as the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from . import hydra_files
from .errors import user_errors
from .hookspecs import hookimpl


def compose_config(overrides: Sequence[str] = (), config_name: str = "config", pm=None):
    """Compose ``conf/config.yaml`` (or ``conf/CONFIG_NAME.yaml``: ``train_app``,
    ``evaluate_app``) with Hydra overrides, as ``ailusion OVERRIDES…`` would; the config options
    of ``pm``'s plugins (``config_searchpath``) are found too, installed or not."""
    from hydra_plugins.ailusion_searchpath.ailusion_searchpath import plugins_of, register

    register()  # plugins' config options (config_searchpath hook)
    with user_errors(), plugins_of(pm), initialize_config_module("ailusion.conf",
                                                                 version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def run(overrides: Sequence[str] = (), run_dir: str | Path | None = None, pm=None):
    """Run a pipeline and return its :class:`ailusion.pipeline.RunResult`.

    Args:
        overrides (`Sequence[str]`, *optional*):
            Hydra overrides, as on the command line: ``["generator=tiny", "generator.seed=3"]``.
        run_dir (`str` or `Path`, *optional*, defaults to ``outputs/DATE/TIME``):
            Where the outputs go; the composed config is saved in its ``.hydra/`` as the CLI does.
        pm (*optional*):
            A plugin manager from :func:`ailusion.manager.get_plugin_manager`, to run with
            plugins registered by hand (tests, notebooks): their stages, schemas and config
            options (``config_searchpath``) are used as if they were installed.

    Raises:
        :class:`ailusion.errors.AilusionError` for every user error (a typo, an unknown option
        or key, a bad value, a file that cannot be read or written), with the one-line message
        the CLI prints for it.

    Example::

        import ailusion
        result = ailusion.run(["generator=tiny", "preprocessor.grayscale=true"], run_dir="out")
        result.predictions.shape  # (3, 10)
    """
    from .manager import get_plugin_manager
    from .pipeline import run_pipeline

    config = compose_config(overrides, pm=pm)
    if run_dir is None:
        run_dir = Path("outputs", time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S"))
    pm = pm or get_plugin_manager()
    saver = _SavedConfig(config, list(overrides))
    pm.register(saver)
    try:
        with user_errors():
            return run_pipeline(config, Path(run_dir), pm=pm)
    finally:
        pm.unregister(saver)


class _SavedConfig:
    """Writes ``.hydra/config.yaml`` and ``overrides.yaml`` as the CLI does, once the run holds
    its run dir (so a refused run never overwrites the files of the run it was refused for)."""

    def __init__(self, config, overrides: list[str]):
        self.config, self.overrides = config, overrides

    @hookimpl
    def run_start(self, run_dir):
        hydra_files.save(Path(run_dir) / ".hydra", {
            "config.yaml": self.config, "overrides.yaml": OmegaConf.create(self.overrides),
        })


def train(overrides: Sequence[str] = (), run_dir: str | Path | None = None, pm=None) -> dict:
    """Train as ``ailusion train OVERRIDES…`` does, into ``run_dir``; return the metrics.

    Example::

        metrics = ailusion.train(["data=outputs/shapes", "train.epochs=5"], run_dir="trained")
        metrics["val_accuracy"]
    """
    from .training import train as train_job

    config = compose_config(overrides, "train_app", pm=pm)
    if run_dir is None:
        run_dir = Path("outputs", "train", time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S"))
    explicit = frozenset(o.split("=", 1)[0].lstrip("+~") for o in overrides)
    with user_errors():
        return train_job(config, config.data, Path(run_dir), pm=pm, explicit=explicit)
