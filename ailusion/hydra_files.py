"""Hydra's ``.hydra/`` files, written once the run holds its run dir.

Hydra writes ``.hydra/`` into the run dir before the job starts, over the files of any run there,
even a run the job then refuses (a dir in use, or made with another config). So the CLI tells
Hydra not to (``hydra.output_subdir=null``) and writes the same three files from the
``run_start`` hook, which the pipeline calls only once the run dir is its own.
"""

from __future__ import annotations

from pathlib import Path

from .rundir.files import atomic_path
from .hookspecs import hookimpl

# Carried in the job's config, so that jobs a launcher runs in other processes see it too.
SUBDIR_ENV = "AILUSION_HYDRA_SUBDIR"
DEFERRING_OVERRIDES = ["hydra.output_subdir=null", f"++hydra.job.env_set.{SUBDIR_ENV}=.hydra"]
_INSPECT_FLAGS = ("--cfg", "-c", "--info", "-i", "--shell-completion", "-sc", "--resolve")


def defer(argv: list[str]) -> None:
    """Add the overrides that move the writing of ``.hydra/`` to the job, unless ``argv`` sets
    ``hydra.output_subdir`` itself or only inspects the config."""
    if any(a in _INSPECT_FLAGS or a.lstrip("+").startswith("hydra.output_subdir=") for a in argv):
        return
    argv += DEFERRING_OVERRIDES


def register(pm, config) -> None:
    """Register :class:`HydraFiles` on ``pm`` when the job was told to write ``.hydra/``."""
    from hydra.core.hydra_config import HydraConfig

    subdir = HydraConfig.get().job.env_set.get(SUBDIR_ENV)
    if subdir:
        pm.register(HydraFiles(config, subdir), name="hydra-files")


class HydraFiles:
    """Writes Hydra's config.yaml, hydra.yaml and overrides.yaml, as Hydra would have."""

    def __init__(self, config, subdir: str):
        self.config, self.subdir = config, subdir

    @hookimpl
    def run_start(self, run_dir):
        """Write the files: the run dir is this run's now."""
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        hydra_cfg = OmegaConf.create(OmegaConf.to_container(HydraConfig.instance().cfg))
        hydra_cfg.hydra.output_subdir = self.subdir
        del hydra_cfg.hydra.job.env_set[SUBDIR_ENV]
        overrides = hydra_cfg.hydra.overrides
        overrides.hydra = [o for o in overrides.hydra if o not in DEFERRING_OVERRIDES]
        save(Path(run_dir) / self.subdir, {
            "config.yaml": self.config, "hydra.yaml": hydra_cfg, "overrides.yaml": overrides.task,
        })


def save(out: Path, files: dict) -> None:
    """Write each ``{file name: config node}`` of ``files`` into ``out`` as YAML, atomically."""
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    for name, node in files.items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(OmegaConf.to_yaml(node), encoding="utf-8")
