"""The PyTorch twin of the Flux model: the same function, from the same Flux-layout weights."""

from __future__ import annotations

import logging

import numpy as np

from ailusion.devices import device_unavailable

from .weights import Architecture, conv_name

log = logging.getLogger(__name__)

#: Images per convolution call on the CPU (measured fastest for 224² inputs on 2 cores).
CPU_CHUNK = 4


def torch_kernel(flux_weight: np.ndarray) -> np.ndarray:
    """Flux's ``(kW, kH, Cin, Cout)`` convolution kernel as PyTorch's ``(Cout, Cin, kH, kW)``.

    Flux's ``Conv`` is a true convolution and ``torch.nn.functional.conv2d`` a cross-correlation,
    so the kernel is flipped along both spatial axes.
    """
    return np.ascontiguousarray(flux_weight[::-1, ::-1].transpose(3, 2, 1, 0))


def torch_layout(array: np.ndarray) -> np.ndarray:
    """A Flux-layout tensor in PyTorch's layout: convolution kernels (4-D) flipped and
    transposed (:func:`torch_kernel`); vectors and ``Dense`` matrices ``(out, in)`` as they are."""
    return torch_kernel(array) if array.ndim == 4 else np.ascontiguousarray(array)


def flux_layout(array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`torch_layout`: a PyTorch-layout tensor in Flux's layout, always a
    copy (a tensor's ``.numpy()`` shares its memory, which training goes on updating)."""
    if array.ndim == 4:
        array = array.transpose(3, 2, 1, 0)[::-1, ::-1]
    return np.array(array, order="C", copy=True)


def torch_device(device: str) -> str:
    """``cuda`` or ``cpu`` for ``model.device`` (auto, cpu or cuda): ``auto`` is CUDA where it
    works, and ``cuda`` without it is an error, as for the generator."""
    import torch

    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise device_unavailable("model.device", device)
    return "cpu"


class TorchBackend:
    """Runs ``(Conv → [pooling]) × conv_layers → flatten → Dense`` with torch, on the CPU or a
    CUDA device.

    On a GPU it keeps torch's float32 defaults, as Flux keeps CUDA.jl's: the convolution may run
    in TF32 on Ampere or newer (torch's ``cudnn.allow_tf32``; CUDA.jl's default math mode gives
    cuDNN ``CUDNN_TENSOR_OP_MATH``, cuDNN.jl ``math_mode``), the dense layer in full float32
    (torch's ``matmul.allow_tf32`` is off; CUDA.jl's cuBLAS uses ``CUBLAS_DEFAULT_MATH``).
    ``NVIDIA_TF32_OVERRIDE=0`` turns TF32 off in both, as the tests do where they compare them.
    """

    name = "torch"

    def __init__(self, tensors: dict[str, np.ndarray], arch: Architecture, device: str = "auto"):
        import torch

        self.arch = arch
        self.device = torch_device(device)

        def own(array):  # a copy: training updates the weights in place
            return torch.tensor(np.asarray(array, np.float32), device=self.device)

        names = [conv_name(b) for b in range(1, arch.conv_layers + 1)]
        self.convs = [(own(torch_kernel(tensors[f"{n}.weight"])), own(tensors[f"{n}.bias"]))
                      for n in names]
        self.dense_weight = own(tensors["dense.weight"])  # (out, in) as in Flux
        self.dense_bias = own(tensors["dense.bias"])

    def parameters(self) -> dict:
        """The weights as torch tensors (PyTorch layout), by their Flux names, layer by layer."""
        params = {}
        for block, (kernel, bias) in enumerate(self.convs, start=1):
            params[f"{conv_name(block)}.weight"], params[f"{conv_name(block)}.bias"] = kernel, bias
        return params | {"dense.weight": self.dense_weight, "dense.bias": self.dense_bias}

    def tensors(self) -> dict[str, np.ndarray]:
        """The current weights in Flux layout (after training, the trained ones)."""
        return {n: flux_layout(t.detach().cpu().numpy()) for n, t in self.parameters().items()}

    def logits(self, x):
        """(N, outputs) logits of a (N, C, H, W) tensor, differentiable (training's forward)."""
        import torch.nn.functional as F

        # NCHW throughout: channels-last, fastest for inference, costs a training step ~10%.
        maps = self._feature_maps(x, channels_last=False)
        return F.linear(maps.reshape(len(x), -1), self.dense_weight, self.dense_bias)

    def trainer(self, settings):
        """An Adam trainer over these weights (:class:`.torch_training.TorchTrainer`)."""
        from .torch_training import TorchTrainer

        return TorchTrainer(self, settings)

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

    def _feature_maps(self, x, channels_last: bool = True):
        """Convolution, activation and pooling of a (n, C, H, W) tensor, block by block."""
        import torch
        import torch.nn.functional as F

        arch = self.arch
        if self.device == "cpu" and channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for kernel, bias in self.convs:
            x = F.conv2d(x, kernel, bias, stride=arch.stride, padding=arch.pad)
            if arch.activation != "identity":
                x = getattr(torch, arch.activation)(x)  # relu, sigmoid, tanh: as NNlib's
            if arch.pooling == "max":
                x = F.max_pool2d(x, arch.pool_size, arch.pool_size)
            elif arch.pooling == "mean":
                x = F.avg_pool2d(x, arch.pool_size, arch.pool_size)
        return x
