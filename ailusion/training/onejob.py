"""One job, generate then train: the main app with ``train=default`` trains the model on the
run it just wrote, evaluates it on ``eval_dir``, writes the training outputs under
``RUN_DIR/train/`` and returns the objective (a float) for sweepers that optimise."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from . import job, settings

SUBDIR = "train"


def check(config, run_dir: Path) -> None:
    """What can be checked before generating: the ``train`` node and the eval dir (a refused
    job leaves no run dir behind)."""
    from ..rundir.claim import discard_if_unused

    try:
        eval_dir = config.get("eval_dir")
        settings.check(config.train, evaluated=eval_dir is not None)
        if eval_dir is not None and not Path(eval_dir).expanduser().is_dir():
            raise ConfigError("eval_dir", f"no such folder: {eval_dir}")
    except BaseException:
        discard_if_unused(run_dir)
        raise


def explicit_keys() -> frozenset:
    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = HydraConfig.get().overrides.task
    except ValueError:  # no Hydra job (the Python API)
        return frozenset()
    return frozenset(o.split("=", 1)[0].lstrip("+~") for o in overrides)


def train_on_run(config, run_dir: Path, pm=None) -> float:
    """Train on ``run_dir`` into ``run_dir/train``; the objective's value."""
    out_dir = Path(run_dir) / SUBDIR
    metrics = job.train(config, [run_dir], out_dir, pm, explicit_keys())
    print(job.summary_line(metrics, out_dir), file=sys.stderr)
    return metrics["objective_value"]
