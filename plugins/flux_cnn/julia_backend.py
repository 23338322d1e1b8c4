"""The Flux backend: the model built and run by ``AilusionFlux`` (``julia/``) via juliacall."""

from __future__ import annotations

import logging

import numpy as np

from ailusion.devices import device_unavailable
from ailusion.errors import AilusionError

from . import julia_import
from .julia_thread import call, release
from .weights import Architecture, conv_name

log = logging.getLogger(__name__)


def whcn_view(batch: np.ndarray) -> np.ndarray:
    """Flux's (W, H, C, N) view of a C-contiguous (N, C, H, W) batch, over the same memory.

    Reversing the axes of a C-contiguous array gives an F-contiguous one, which juliacall hands
    to Julia as a ``PyArray`` and ``AilusionFlux.forward`` reads in place: the batch is not copied
    on its way to Flux.
    """
    return batch.transpose(3, 2, 1, 0)


class JuliaBackend:
    """Builds the Flux chain from Flux-layout weights and runs batches through it."""

    name = "julia"

    def __init__(
        self,
        tensors: dict[str, np.ndarray],
        arch: Architecture,
        device: str = "auto",
        install: bool = False,
    ):
        gpu = device == "cuda" or (device == "auto" and julia_import.has_nvidia_gpu())
        if device == "cuda" and not julia_import.has_nvidia_gpu():  # before fetching CUDA.jl
            raise device_unavailable("model.device", device)
        jl = julia_import.load(gpu=gpu, install=install)
        # Every touch of a Julia value, attribute lookups included, happens on the Julia thread.
        self.arch = arch
        self.flux = call(getattr, jl, "AilusionFlux")
        self.model = call(self._julia, "build", self._build, tensors, arch, gpu)
        self.device = call(lambda: str(self.flux.device_name(self.model)))
        if device == "cuda" and self.device == "CPUDevice":  # CUDA.functional() is false
            raise device_unavailable("model.device", device)

    def __del__(self):
        release(self.__dict__.pop("model", None), self.__dict__.pop("flux", None))

    @staticmethod
    def _julia(what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:
            message = julia_import.first_line(exc)
        # Raised outside the handler: the Julia exception must not travel to other threads.
        raise AilusionError(f"model.backend=julia: Flux failed to {what} the model: {message}")

    def _build(self, tensors, arch: Architecture, gpu: bool):
        # Tuples: juliacall hands each array inside to Julia as an array (a list would arrive as
        # a PyList of Python objects).
        names = [conv_name(b) for b in range(1, arch.conv_layers + 1)]
        return self.flux.build_model(
            tuple(tensors[f"{n}.weight"] for n in names),
            tuple(tensors[f"{n}.bias"] for n in names),
            tensors["dense.weight"],
            tensors["dense.bias"],
            activation=arch.activation,
            stride=arch.stride,
            pad=arch.pad,
            pooling=arch.pooling,
            pool_size=arch.pool_size,
            gpu=gpu,
        )

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(N, outputs) logits for a (N, C, H, W) float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)  # no copy for a float32 batch
        return call(self._julia, "run", self._forward, batch)

    def trainer(self, settings):
        """An Adam trainer over this chain (:class:`.julia_training.JuliaTrainer`)."""
        from .julia_training import JuliaTrainer

        return JuliaTrainer(self, settings)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        # With the GIL released (juliacall's _jl_call_nogil: PythonCall src/JlWrap/any.jl,
        # pyjlany_call_nogil converts the arguments, then runs the call in GIL.@unlock), so the
        # generating thread runs on while Flux computes. forward touches no Python object: the
        # batch arrives as a PyArray whose memory it reads through a pointer; and a collection
        # meanwhile only queues Python objects' decrefs (PythonCall src/GC/GC.jl, enqueue).
        logits = self.flux.forward._jl_call_nogil(self.model, whcn_view(batch))  # (outputs, N)
        return np.ascontiguousarray(logits.to_numpy().T)
