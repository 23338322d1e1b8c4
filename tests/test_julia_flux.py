"""The Flux backend itself, through juliacall: run where a Julia executable exists.

The first run resolves Julia's packages (Flux, …) and precompiles them: minutes, with internet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ailusion.plugins.flux_cnn import julia_import, weights
from fixtures.make_fixtures import ARCH

FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = [
    pytest.mark.julia,
    pytest.mark.skipif(
        julia_import.find_julia() is None,
        reason="no Julia executable: install Julia or set PYTHON_JULIACALL_EXE to run Flux",
    ),
]


@pytest.fixture(scope="module")
def flux_backend():
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend

    tensors = weights.load(FIXTURES / "flux_cnn_weights.safetensors", ARCH, (3, 16, 16))
    return JuliaBackend(tensors, ARCH, device="cpu")


def test_flux_gives_the_fixture_logits(flux_backend):
    batch = np.load(FIXTURES / "flux_cnn_input.npy")
    logits = flux_backend.forward(batch)
    assert flux_backend.device == "CPUDevice"
    assert logits.shape == (2, 5) and logits.dtype == np.float32
    np.testing.assert_allclose(
        logits, np.load(FIXTURES / "flux_cnn_logits.npy"), rtol=1e-4, atol=1e-4
    )


@pytest.mark.skipif(not julia_import.has_nvidia_gpu(), reason="no NVIDIA GPU visible")
def test_a_gpu_asked_for_after_the_cpu_start_gives_the_fixture_logits(flux_backend):
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend

    assert flux_backend.device == "CPUDevice"  # Julia started on the CPU, without CUDA
    tensors = weights.load(FIXTURES / "flux_cnn_weights.safetensors", ARCH, (3, 16, 16))
    gpu = JuliaBackend(tensors, ARCH, device="cuda")  # adds CUDA.jl and cuDNN.jl, then loads them
    assert gpu.device == "CUDADevice"
    np.testing.assert_allclose(
        gpu.forward(np.load(FIXTURES / "flux_cnn_input.npy")),
        np.load(FIXTURES / "flux_cnn_logits.npy"), rtol=1e-4, atol=1e-4,
    )


def test_flux_gives_the_deep_fixture_logits():
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend
    from fixtures.make_fixtures import DEEP_ARCH

    tensors = weights.load(FIXTURES / "flux_cnn_deep_weights.safetensors", DEEP_ARCH, (3, 16, 16))
    backend = JuliaBackend(tensors, DEEP_ARCH, device="cpu")
    np.testing.assert_allclose(
        backend.forward(np.load(FIXTURES / "flux_cnn_input.npy")),
        np.load(FIXTURES / "flux_cnn_deep_logits.npy"), rtol=1e-4, atol=1e-4,
    )


def test_flux_takes_a_whole_batch_in_one_call(flux_backend):
    batch = np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32)
    together = flux_backend.forward(batch)
    one_by_one = np.concatenate([flux_backend.forward(batch[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-5)


def test_julia_started_before_torch():
    assert julia_import.started_after_torch() is False  # tests/conftest.py starts it first


def test_a_run_on_flux_predicts_what_the_torch_twin_does(run_tiny, tmp_path, no_tf32):
    flux = run_tiny("preprocessor.size=32", "model.backend=julia", run_dir=tmp_path / "flux")
    twin = run_tiny("preprocessor.size=32", "model.backend=torch", run_dir=tmp_path / "torch")
    np.testing.assert_allclose(flux.predictions, twin.predictions, rtol=1e-4, atol=1e-4)


def test_flux_reads_the_batch_in_place(flux_backend):
    from ailusion.plugins.flux_cnn.julia_backend import whcn_view
    from ailusion.plugins.flux_cnn.julia_thread import call

    jl = julia_import.load()
    batch = np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)
    address = call(
        lambda: int(jl.seval("x -> UInt(pointer(AilusionFlux.as_dense(x)))")(whcn_view(batch)))
    )
    assert address == batch.ctypes.data
