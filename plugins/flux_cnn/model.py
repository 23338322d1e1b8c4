"""The model stage: weights in Flux layout, the forward pass on Flux (Julia) or its PyTorch twin."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

import numpy as np

from ailusion.errors import AilusionError, ConfigError

from . import julia_find, julia_import, weights
from .weights import ACTIVATIONS, POOLINGS, Architecture

log = logging.getLogger(__name__)

BACKENDS = ("auto", "julia", "torch")
DEVICES = ("auto", "cpu", "cuda")
_POSITIVE = ("kernel_size", "out_channels", "conv_layers", "stride", "pool_size", "num_outputs",
             "batch_size")
_noticed: set[str] = set()


@dataclass
class FluxCNNConfig:
    """The keys of ``conf/model/flux_cnn.yaml`` (which documents each) and their types."""

    backend: str = "auto"
    device: str = "auto"
    install_julia: bool = False
    kernel_size: int = 3
    out_channels: int = 8
    conv_layers: int = 1
    activation: str = "relu"
    stride: int = 1
    pad: int = 0
    pooling: Optional[str] = None
    pool_size: int = 2
    num_outputs: int = 10
    labels: Optional[List[str]] = None
    seed: int = 0
    weights: Optional[str] = None
    batch_size: int = 8


def _choice(config, key: str, allowed) -> None:
    if config[key] not in allowed:
        names = ", ".join("null" if a is None else str(a) for a in allowed)
        raise ConfigError(f"model.{key}", f"must be one of {names}, got {config[key]!r}")


def check_config(config) -> None:
    """Raise ConfigError naming the first key of the ``model`` node that is not allowed."""
    _choice(config, "backend", BACKENDS)
    _choice(config, "device", DEVICES)
    _choice(config, "activation", ACTIVATIONS)
    _choice(config, "pooling", (None, *POOLINGS))
    for key in _POSITIVE:
        if not isinstance(config.get(key, 1), int) or config.get(key, 1) < 1:
            raise ConfigError(f"model.{key}",
                              f"must be a positive integer, got {config.get(key)!r}")
    if not isinstance(config.pad, int) or config.pad < 0:
        raise ConfigError("model.pad", f"must be a non-negative integer, got {config.pad!r}")
    if config.labels is not None and len(config.labels) != config.num_outputs:
        raise ConfigError(
            "model.labels",
            f"has {len(config.labels)} names for model.num_outputs={config.num_outputs} outputs",
        )
    if config.weights is not None and not Path(config.weights).is_file():
        raise ConfigError("model.weights", f"no such file: {config.weights}")


def _notice_once(message: str) -> None:
    if message not in _noticed:
        _noticed.add(message)
        log.warning(message)


class FluxCNN:
    """``Conv((k, k), C => out_channels, activation; stride, pad)`` → [pooling] (× conv_layers,
    doubling the channels) → flatten → ``Dense(features => num_outputs)``, in Flux or in
    PyTorch, from the same weights."""

    def __init__(self, config, context):
        check_config(config)
        self.config = config
        self.run_dir = Path(context.run_dir)
        self.arch = Architecture.from_config(config)
        self.labels = (
            [str(x) for x in config.labels]
            if config.labels
            else [str(i) for i in range(config.num_outputs)]
        )
        # Trained weights name their classes: those are the outputs (and labels) unless the
        # config names its own labels.
        classes = weights.saved_classes(config.weights) if config.weights else None
        if classes and not config.labels:
            self.arch = replace(self.arch, num_outputs=len(classes))
            self.labels = classes
        self._named = bool(config.labels or classes)  # class names, saved with the weights
        self.backend = None
        self._trainer = None

    def setup(self, input_shape: tuple[int, int, int]) -> None:
        """Draw or load the weights for (C, H, W) inputs and start the backend."""
        config, input_shape = self.config, tuple(int(n) for n in input_shape)
        # 1. Weights, checked against the input shape
        try:
            self.arch.feature_map(input_shape)
        except ValueError as exc:
            raise ConfigError("model.kernel_size", f"{exc} (the preprocessor's output)") from None
        if config.weights is not None:
            tensors = weights.load(config.weights, self.arch, input_shape)
        else:
            tensors = weights.glorot_init(self.arch, input_shape, config.seed)
        # 2. The backend: Julia first, as it must load before torch
        backend = config.backend
        if backend == "auto" and julia_import.find_julia() is None:
            named = julia_find.named_julia()  # named, but not an executable: say so
            reason = named.problem if named else "no Julia executable found"
            _notice_once(
                f"model.backend=auto: {reason}, running the PyTorch twin of the Flux model"
            )
            backend = "torch"
        if backend in ("auto", "julia"):
            from .julia_backend import JuliaBackend

            try:
                self.backend = JuliaBackend(tensors, self.arch, config.device, config.install_julia)
            except AilusionError as exc:
                if backend == "julia" or isinstance(exc, ConfigError):
                    raise
                _notice_once(f"model.backend=auto: running the PyTorch twin ({exc})")
        if self.backend is None:
            from .torch_backend import TorchBackend

            self.backend = TorchBackend(tensors, self.arch, config.device)
        self._tensors, self._input_shape = tensors, input_shape

    def save(self, run_dir: Path) -> None:
        """Write the weights this run uses (once trained, the trained ones) to
        ``run_dir/model_weights.safetensors``, with the class names when the outputs have any."""
        tensors = self._trainer.weights() if self._trainer is not None else self._tensors
        weights.save(
            Path(run_dir) / weights.FILE_NAME, tensors, self.arch, self._input_shape,
            classes=self.labels if self._named else None,
        )

    # Training (the contract of ailusion.stages.TrainableModel): both backends train, with the
    # same loss and Adam, on the batches ailusion.training hands them.

    def train_setup(self, settings) -> None:
        """Start Adam over the weights ``setup`` made, on the backend ``setup`` chose."""
        if settings.num_classes != self.arch.num_outputs:
            raise ConfigError(
                "model.num_outputs",
                f"is {self.arch.num_outputs}, but the data has {settings.num_classes} classes",
            )
        self._trainer = self.backend.trainer(settings)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """One Adam step; the batch's mean loss and logits before it."""
        return self._trainer.step(x, y)

    def train_state(self) -> dict[str, np.ndarray]:
        """Weights and Adam's state, to resume from."""
        return self._trainer.state()

    def load_train_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`train_state`'s arrays."""
        self._trainer.load_state(state)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, num_outputs) logits for a (N, C, H, W) float32 batch, in one call."""
        return self.backend.forward(batch)
