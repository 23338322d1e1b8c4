"""The ``train`` config node (``conf/train/default.yaml``), checked before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..stages import TrainSettings

OBJECTIVES = ("auto", "val_accuracy", "eval_accuracy", "train_accuracy", "val_loss")


@dataclass(frozen=True)
class Plan:
    """What a training job does: the checked ``train`` node."""

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    seed: int
    val_fraction: float
    threads: int | None
    objective: str

    def settings(self, num_classes: int) -> TrainSettings:
        return TrainSettings(num_classes=num_classes, lr=self.lr, betas=self.betas,
                             eps=self.eps, weight_decay=self.weight_decay, threads=self.threads)

    def objective_for(self, evaluated: bool) -> str:
        if self.objective == "auto":
            return "eval_accuracy" if evaluated else "val_accuracy"
        return self.objective


def _int(node, key: str, low: int = 1):
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"train.{key}", f"must be an integer of at least {low}, got {value!r}")
    return value


def _number(node, key: str, low: float, high: float = math.inf, closed: bool = True) -> float:
    value = node.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low <= value if closed else low < value) and value < high
    if not ok:
        where = f"[{low}, {high})" if closed else f"({low}, {high})"
        raise ConfigError(f"train.{key}", f"must be a number in {where}, got {value!r}")
    return float(value)


def check(node, evaluated: bool) -> Plan:
    """The :class:`Plan` of a ``train`` node, or ConfigError naming its first bad key."""
    betas = node.get("betas")
    if not (hasattr(betas, "__len__") and len(betas) == 2):
        raise ConfigError("train.betas", f"must be [beta1, beta2], got {betas!r}")
    for beta in betas:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
            raise ConfigError("train.betas", f"must be two numbers in [0, 1), got {list(betas)}")
    threads = node.get("threads")
    if threads is not None:
        threads = _int(node, "threads")
    objective = node.get("objective")
    if objective not in OBJECTIVES:
        raise ConfigError("train.objective", f"must be one of {', '.join(OBJECTIVES)}, "
                          f"got {objective!r}")
    if objective == "eval_accuracy" and not evaluated:
        raise ConfigError("train.objective", "eval_accuracy needs real images: eval_dir=DIR")
    return Plan(
        epochs=_int(node, "epochs"), batch_size=_int(node, "batch_size"),
        lr=_number(node, "lr", 0.0, closed=False), betas=(float(betas[0]), float(betas[1])),
        eps=_number(node, "eps", 0.0, closed=False),
        weight_decay=_number(node, "weight_decay", 0.0),
        seed=_int(node, "seed", 0), val_fraction=_number(node, "val_fraction", 0.0, 1.0, False),
        threads=threads, objective=objective,
    )
