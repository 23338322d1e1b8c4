"""The PyTorch twin of the Flux model: the same function, from the same Flux-layout weights."""

from __future__ import annotations

import logging

import numpy as np

from .weights import Architecture

log = logging.getLogger(__name__)

#: Images per convolution call on the CPU (measured fastest for 224² inputs on 2 cores).
CPU_CHUNK = 4


def torch_kernel(flux_weight: np.ndarray) -> np.ndarray:
    """Flux's ``(kW, kH, Cin, Cout)`` convolution kernel as PyTorch's ``(Cout, Cin, kH, kW)``.

    Flux's ``Conv`` is a true convolution and ``torch.nn.functional.conv2d`` a cross-correlation,
    so the kernel is flipped along both spatial axes.
    """
    return np.ascontiguousarray(flux_weight[::-1, ::-1].transpose(3, 2, 1, 0))


def torch_device(device: str) -> str:
    """``cuda`` or ``cpu`` for ``model.device`` (auto, cpu or cuda); CUDA only where it works."""
    import torch

    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        log.warning("model.device=cuda: torch finds no usable CUDA device; running on the CPU")
    return "cpu"


class TorchBackend:
    """Runs ``Conv → [pooling] → flatten → Dense`` with torch, on the CPU or a CUDA device."""

    name = "torch"

    def __init__(self, tensors: dict[str, np.ndarray], arch: Architecture, device: str = "auto"):
        import torch

        self.arch = arch
        self.device = torch_device(device)
        to = dict(device=self.device, dtype=torch.float32)
        self.kernel = torch.as_tensor(torch_kernel(tensors["conv.weight"]), **to)
        self.conv_bias = torch.as_tensor(tensors["conv.bias"], **to)
        self.dense_weight = torch.as_tensor(tensors["dense.weight"], **to)  # (out, in) as in Flux
        self.dense_bias = torch.as_tensor(tensors["dense.bias"], **to)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, outputs) logits for a (N, C, H, W) float32 batch."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            x = torch.as_tensor(batch, dtype=torch.float32, device=self.device)
            # On the CPU the convolution runs a few images at a time in channels-last layout
            # (oneDNN's fast path for few input channels, and each chunk's feature maps stay in
            # cache); the dense layer then runs once on the whole batch, reading its weights once.
            chunk = CPU_CHUNK if self.device == "cpu" else len(x)
            features = torch.empty((len(x), self.dense_weight.shape[1]), device=self.device)
            for start in range(0, len(x), chunk):
                maps = self._feature_maps(x[start:start + chunk])
                # Flux flattens WHCN column-major: the same order as NCHW flattened row-major,
                # which is what viewing the rows as (n, C, H, W) and copying into them gives.
                features[start:start + len(maps)].view(maps.shape).copy_(maps)
            return F.linear(features, self.dense_weight, self.dense_bias).cpu().numpy()

    def _feature_maps(self, x):
        """Convolution, activation and pooling of a (n, C, H, W) tensor."""
        import torch
        import torch.nn.functional as F

        arch = self.arch
        if self.device == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, self.kernel, self.conv_bias, stride=arch.stride, padding=arch.pad)
        if arch.activation != "identity":
            x = getattr(torch, arch.activation)(x)  # relu, sigmoid, tanh: as NNlib's
        if arch.pooling == "max":
            x = F.max_pool2d(x, arch.pool_size, arch.pool_size)
        elif arch.pooling == "mean":
            x = F.avg_pool2d(x, arch.pool_size, arch.pool_size)
        return x
