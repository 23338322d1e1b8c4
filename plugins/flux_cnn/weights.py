"""The model's architecture and weights, in Flux's layout, saved and loaded as safetensors.

The tensors are exactly what Flux's layers are built from:

- ``conv.weight`` ``(kW, kH, Cin, Cout)`` and ``conv.bias`` ``(Cout,)``, for
  ``Conv(weight, bias, σ)``: a true convolution (the kernel flipped, unlike PyTorch's);
- ``dense.weight`` ``(outputs, features)`` and ``dense.bias`` ``(outputs,)``, for
  ``Dense(weight, bias)``: ``weight * x .+ bias``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ailusion.rundir.files import write_bytes
from ailusion.errors import ConfigError

FILE_NAME = "model_weights.safetensors"
TENSORS = ("conv.weight", "conv.bias", "dense.weight", "dense.bias")
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")  # the same functions in Flux and torch
POOLINGS = ("max", "mean")


@dataclass(frozen=True)
class Architecture:
    """``Chain(Conv((k, k), C => out_channels, activation; stride, pad), [pooling], flatten,
    Dense(features => num_outputs))``; ``pooling`` is ``"max"``, ``"mean"`` or ``None``."""

    kernel_size: int
    out_channels: int
    activation: str
    stride: int
    pad: int
    pooling: str | None
    pool_size: int
    num_outputs: int

    @classmethod
    def from_config(cls, config) -> "Architecture":
        return cls(**{name: config[name] for name in cls.__dataclass_fields__})

    def feature_map(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(channels, height, width) reaching ``flatten`` for (C, H, W) inputs, or ValueError."""
        _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.pad
        if min(h, w) + 2 * p < k:
            raise ValueError(
                f"inputs of shape {tuple(input_shape)} are smaller than the {k}×{k} kernel"
            )
        h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if self.pooling:
            q = self.pool_size
            if min(h, w) < q:
                raise ValueError(
                    f"the convolution's {h}×{w} output is smaller than the {q}×{q} pooling"
                )
            h, w = (h - q) // q + 1, (w - q) // q + 1
        return self.out_channels, h, w

    def shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor, in Flux layout, for (C, H, W) inputs."""
        k, cout, n = self.kernel_size, self.out_channels, self.num_outputs
        features = int(np.prod(self.feature_map(input_shape)))
        return {
            "conv.weight": (k, k, input_shape[0], cout),
            "conv.bias": (cout,),
            "dense.weight": (n, features),
            "dense.bias": (n,),
        }


def glorot_init(
    arch: Architecture, input_shape: tuple[int, int, int], seed: int
) -> dict[str, np.ndarray]:
    """Weights drawn from ``seed`` as Flux's default init draws them: ``glorot_uniform`` kernels
    (uniform in ±sqrt(6 / (fan_in + fan_out)), with Flux's fans) and zero biases."""
    rng = np.random.default_rng(seed)
    shapes = arch.shapes(input_shape)

    def glorot(shape, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    kw, kh, cin, cout = shapes["conv.weight"]
    out, features = shapes["dense.weight"]
    return {
        "conv.weight": glorot(shapes["conv.weight"], kw * kh * cin, kw * kh * cout),
        "conv.bias": np.zeros(shapes["conv.bias"], np.float32),
        "dense.weight": glorot(shapes["dense.weight"], features, out),
        "dense.bias": np.zeros(shapes["dense.bias"], np.float32),
    }


def save(
    path: Path, tensors: dict[str, np.ndarray], arch: Architecture, input_shape,
    classes: list[str] | None = None,
) -> None:
    """Write ``tensors`` atomically, with the architecture and input shape as metadata, and
    ``classes`` (one name per output, as a JSON list) for trained weights."""
    from safetensors.numpy import save

    metadata = {k: "none" if v is None else str(v) for k, v in asdict(arch).items()}
    metadata["layout"] = "flux"
    metadata["input_shape"] = ",".join(str(n) for n in input_shape)
    if classes is not None:
        metadata["classes"] = json.dumps([str(c) for c in classes])
    data = save({name: np.ascontiguousarray(tensors[name]) for name in TENSORS}, metadata)
    write_bytes(Path(path), _sorted_header(data))


def _sorted_header(data: bytes) -> bytes:
    """``data`` with its JSON header's keys sorted: safetensors writes the metadata in hash
    order, which differs between processes, and a resumed run must write the same bytes as an
    uninterrupted one. The tensors' offsets are relative to the data, so they stay valid."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":"))
    header += " " * (-len(header) % 8)  # safetensors keeps the data 8-byte aligned
    return len(header).to_bytes(8, "little") + header.encode() + data[8 + size:]


def saved_classes(path: str | Path) -> list[str] | None:
    """The class names a weights file records (trained weights), or None; ConfigError for a
    file that cannot be read or whose ``classes`` are not a list of names."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            text = (f.metadata() or {}).get("classes")
    except (OSError, SafetensorError) as exc:
        raise ConfigError("model.weights", f"cannot read {path} as safetensors: {exc}") from None
    if text is None:
        return None
    try:
        classes = json.loads(text)
    except ValueError:
        classes = None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ConfigError("model.weights", f"{path}: its 'classes' metadata is not a list of names")
    return classes


def load(
    path: str | Path, arch: Architecture, input_shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    """Read a weights file and check it fits ``arch`` and (C, H, W) inputs (else ConfigError)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            found = {name: f.get_tensor(name) for name in f.keys()}
            made_for = (f.metadata() or {}).get("input_shape")
    except (OSError, SafetensorError) as exc:
        raise ConfigError("model.weights", f"cannot read {path} as safetensors: {exc}") from None
    missing = [name for name in TENSORS if name not in found]
    unexpected = sorted(set(found) - set(TENSORS))
    if missing or unexpected:
        parts = [f"lacks {', '.join(missing)}"] if missing else []
        parts += [f"has unexpected {', '.join(unexpected)}"] if unexpected else []
        raise ConfigError(
            "model.weights", f"{path} {' and '.join(parts)} (expects {', '.join(TENSORS)})"
        )
    expected = arch.shapes(input_shape)
    wrong = [name for name in TENSORS if found[name].shape != expected[name]]
    made_for = f" (made for inputs of shape ({made_for.replace(',', ', ')}))" if made_for else ""
    if wrong == ["dense.weight"] and found["dense.weight"].shape[0] == expected["dense.weight"][0]:
        raise ConfigError(
            "model.weights",
            f"{path}{made_for} has dense.weight {found['dense.weight'].shape}, but the "
            f"preprocessor makes inputs of shape {tuple(input_shape)}, which need "
            f"{expected['dense.weight']}",
        )
    if wrong:
        shapes = "; ".join(f"{n} is {found[n].shape}, expected {expected[n]}" for n in wrong)
        raise ConfigError(
            "model.weights", f"{path}{made_for}: {shapes} for inputs of shape {tuple(input_shape)}"
        )
    return {name: np.asarray(found[name], dtype=np.float32) for name in TENSORS}
