"""The model's architecture and weights, in Flux's layout, saved and loaded as safetensors.

The tensors are exactly what Flux's layers are built from:

- ``conv.weight`` ``(kW, kH, Cin, Cout)`` and ``conv.bias`` ``(Cout,)``, for
  ``Conv(weight, bias, σ)``: a true convolution (the kernel flipped, unlike PyTorch's);
- ``dense.weight`` ``(outputs, features)`` and ``dense.bias`` ``(outputs,)``, for
  ``Dense(weight, bias)``: ``weight * x .+ bias``.

With ``conv_layers`` > 1 the blocks after the first add ``conv2.weight``, ``conv2.bias``, …
(block i has ``out_channels * 2**(i-1)`` channels, as CNNs usually double them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ailusion.rundir.files import write_bytes
from ailusion.errors import ConfigError

FILE_NAME = "model_weights.safetensors"
TENSORS = ("conv.weight", "conv.bias", "dense.weight", "dense.bias")  # the single block's
ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")  # the same functions in Flux and torch
POOLINGS = ("max", "mean")


def conv_name(block: int) -> str:
    """``conv`` for the first block (1-based), ``conv2``, ``conv3``, … for the others."""
    return "conv" if block == 1 else f"conv{block}"


@dataclass(frozen=True)
class Architecture:
    """``Chain(Conv((k, k), C => out_channels, activation; stride, pad), [pooling], …, flatten,
    Dense(features => num_outputs))`` with ``conv_layers`` conv blocks (block i: ``out_channels
    * 2**(i-1)`` channels, each followed by the pooling); ``pooling`` is ``"max"``, ``"mean"``
    or ``None``."""

    kernel_size: int
    out_channels: int
    activation: str
    stride: int
    pad: int
    pooling: str | None
    pool_size: int
    num_outputs: int
    conv_layers: int = 1

    @classmethod
    def from_config(cls, config) -> "Architecture":
        return cls(**{name: config.get(name, 1) if name == "conv_layers" else config[name]
                      for name in cls.__dataclass_fields__})

    def channels(self, block: int) -> int:
        """Output channels of conv block ``block`` (1-based)."""
        return self.out_channels * 2 ** (block - 1)

    def tensor_names(self) -> tuple[str, ...]:
        """Every tensor's name, in the order of the layers."""
        convs = [f"{conv_name(b)}.{part}" for b in range(1, self.conv_layers + 1)
                 for part in ("weight", "bias")]
        return (*convs, "dense.weight", "dense.bias")

    def feature_map(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(channels, height, width) reaching ``flatten`` for (C, H, W) inputs, or ValueError."""
        _, h, w = input_shape
        k, s, p = self.kernel_size, self.stride, self.pad
        for block in range(1, self.conv_layers + 1):
            which = "" if self.conv_layers == 1 else f" of conv block {block}"
            if min(h, w) + 2 * p < k:
                inputs = (f"inputs of shape {tuple(input_shape)}" if block == 1
                          else f"the {h}×{w} maps reaching conv block {block}")
                raise ValueError(f"{inputs} are smaller than the {k}×{k} kernel")
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if self.pooling:
                q = self.pool_size
                if min(h, w) < q:
                    raise ValueError(f"the convolution's {h}×{w} output{which} is smaller than "
                                     f"the {q}×{q} pooling")
                h, w = (h - q) // q + 1, (w - q) // q + 1
        return self.channels(self.conv_layers), h, w

    def shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor, in Flux layout, for (C, H, W) inputs."""
        k, n = self.kernel_size, self.num_outputs
        features = int(np.prod(self.feature_map(input_shape)))
        shapes, cin = {}, input_shape[0]
        for block in range(1, self.conv_layers + 1):
            cout = self.channels(block)
            shapes[f"{conv_name(block)}.weight"] = (k, k, cin, cout)
            shapes[f"{conv_name(block)}.bias"] = (cout,)
            cin = cout
        return shapes | {"dense.weight": (n, features), "dense.bias": (n,)}


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

    tensors = {}
    for block in range(1, arch.conv_layers + 1):
        name = conv_name(block)
        kw, kh, cin, cout = shapes[f"{name}.weight"]
        tensors[f"{name}.weight"] = glorot(shapes[f"{name}.weight"], kw * kh * cin, kw * kh * cout)
        tensors[f"{name}.bias"] = np.zeros(shapes[f"{name}.bias"], np.float32)
    out, features = shapes["dense.weight"]
    tensors["dense.weight"] = glorot(shapes["dense.weight"], features, out)
    tensors["dense.bias"] = np.zeros(shapes["dense.bias"], np.float32)
    return tensors


def save(
    path: Path, tensors: dict[str, np.ndarray], arch: Architecture, input_shape,
    classes: list[str] | None = None,
) -> None:
    """Write ``tensors`` atomically, with the architecture and input shape as metadata, and
    ``classes`` (one name per output, as a JSON list) for trained weights."""
    from safetensors.numpy import save

    metadata = {k: "none" if v is None else str(v) for k, v in asdict(arch).items()
                if k != "conv_layers" or v != 1}  # a single block's files are as they were
    metadata["layout"] = "flux"
    metadata["input_shape"] = ",".join(str(n) for n in input_shape)
    if classes is not None:
        metadata["classes"] = json.dumps([str(c) for c in classes])
    data = save({name: np.ascontiguousarray(tensors[name]) for name in arch.tensor_names()},
                metadata)
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
            found = {name: _float32(f, name, path) for name in f.keys()}
            made_for = (f.metadata() or {}).get("input_shape")
    except (OSError, SafetensorError) as exc:
        raise ConfigError("model.weights", f"cannot read {path} as safetensors: {exc}") from None
    names = arch.tensor_names()
    missing = [name for name in names if name not in found]
    unexpected = sorted(set(found) - set(names))
    if missing or unexpected:
        parts = [f"lacks {', '.join(missing)}"] if missing else []
        parts += [f"has unexpected {', '.join(unexpected)}"] if unexpected else []
        layers = f" for model.conv_layers={arch.conv_layers}" if arch.conv_layers > 1 or any(
            n.startswith("conv2.") for n in unexpected) else ""
        raise ConfigError(
            "model.weights",
            f"{path} {' and '.join(parts)} (expects {', '.join(names)}{layers})"
        )
    expected = arch.shapes(input_shape)
    wrong = [name for name in names if found[name].shape != expected[name]]
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
    return {name: found[name] for name in names}


#: The tensor dtypes a weights file may hold, each read as float32: float16 and bfloat16 exactly
#: (every value they hold is a float32), float64 rounded to the nearest float32 (refused where a
#: value is beyond float32's range). Integer, bool and 8-bit float tensors are refused.
ACCEPTED_DTYPES = ("F32", "F16", "BF16", "F64")


def _float32(f, name: str, path: Path) -> np.ndarray:
    """Tensor ``name`` of the open safetensors file ``f`` as float32 (see :data:`ACCEPTED_DTYPES`);
    any other dtype is one :class:`ConfigError` naming the tensor and its dtype."""
    dtype = f.get_slice(name).get_dtype()
    if dtype not in ACCEPTED_DTYPES:
        raise ConfigError("model.weights", f"{path}: tensor {name} is {dtype}; weights must be "
                                           f"floats ({', '.join(ACCEPTED_DTYPES)})")
    if dtype == "BF16":  # numpy has no bfloat16: its 16 bits are the high half of a float32
        return (_raw_tensor(path, name).astype(np.uint32) << 16).view(np.float32)
    tensor = f.get_tensor(name)
    with np.errstate(over="ignore"):  # an overflow is refused just below
        converted = tensor.astype(np.float32)
    if dtype == "F64" and not np.isfinite(converted[np.isfinite(tensor)]).all():
        raise ConfigError("model.weights", f"{path}: tensor {name} (F64) holds values beyond "
                                           "float32's range")
    return converted


def _raw_tensor(path: Path, name: str) -> np.ndarray:
    """The 16-bit words of tensor ``name`` as stored in the safetensors file ``path``."""
    with open(path, "rb") as file:
        size = int.from_bytes(file.read(8), "little")
        entry = json.loads(file.read(size))[name]
        start, end = entry["data_offsets"]
        file.seek(8 + size + start)
        data = file.read(end - start)
    return np.frombuffer(data, dtype="<u2").reshape(entry["shape"])
