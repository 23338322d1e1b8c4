"""The PyTorch backend computes exactly the Flux function, checked against a by-hand reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ailusion.plugins.flux_cnn import weights
from ailusion.plugins.flux_cnn.julia_backend import whcn_view
from ailusion.plugins.flux_cnn.torch_backend import TorchBackend, torch_kernel

from flux_reference import forward_nchw

FIXTURES = Path(__file__).parent / "fixtures"


def random_model(arch, input_shape, seed=1):
    """Random weights, biases included, for ``arch``; nothing symmetric that could hide a flip."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(-1, 1, shape).astype(np.float32)
        for name, shape in arch.shapes(input_shape).items()
    }


def arch(**changes):
    settings = dict(
        kernel_size=3,
        out_channels=3,
        activation="relu",
        stride=1,
        pad=0,
        pooling=None,
        pool_size=2,
        num_outputs=4,
    )
    return weights.Architecture(**(settings | changes))


# Non-square inputs: a height/width mix-up changes the result.
INPUT_SHAPE = (2, 7, 6)
CASES = {
    "plain": arch(),
    "identity": arch(activation="identity"),
    "sigmoid": arch(activation="sigmoid"),
    "tanh, kernel 2": arch(activation="tanh", kernel_size=2),
    "stride 2, pad 1": arch(stride=2, pad=1),
    "max pooling": arch(pooling="max"),
    "mean pooling 3, pad 2": arch(pooling="mean", pool_size=3, pad=2),
    "everything": arch(kernel_size=2, stride=2, pad=1, pooling="max", activation="tanh"),
    "two blocks": arch(conv_layers=2, pad=1),
    "three blocks, tanh": arch(conv_layers=3, pad=1, activation="tanh"),
    "two blocks, mean pooling": arch(conv_layers=2, pad=1, pooling="mean", kernel_size=2),
    "two blocks, stride 2, max": arch(conv_layers=2, stride=2, pad=1, pooling="max", kernel_size=2),
}


def reference(batch, tensors, a, flip=True):
    return forward_nchw(batch, tensors, a.activation, a.stride, a.pad, a.pooling, a.pool_size, flip)


@pytest.mark.parametrize("a", CASES.values(), ids=CASES.keys())
def test_torch_backend_matches_the_flux_reference(a):
    batch = np.random.default_rng(0).random((2, *INPUT_SHAPE), dtype=np.float32)
    tensors = random_model(a, INPUT_SHAPE)
    logits = TorchBackend(tensors, a, "cpu").forward(batch)
    assert logits.shape == (2, 4) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference(batch, tensors, a), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a", CASES.values(), ids=CASES.keys())
def test_torch_backend_on_the_gpu_matches_the_flux_reference(a, no_tf32):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    batch = np.random.default_rng(0).random((2, *INPUT_SHAPE), dtype=np.float32)
    tensors = random_model(a, INPUT_SHAPE)
    backend = TorchBackend(tensors, a, "cuda")
    assert backend.device == "cuda"
    np.testing.assert_allclose(
        backend.forward(batch), reference(batch, tensors, a), rtol=1e-4, atol=1e-4
    )


def test_the_reference_tells_a_convolution_from_a_cross_correlation():
    a = CASES["plain"]
    batch = np.random.default_rng(0).random((2, *INPUT_SHAPE), dtype=np.float32)
    tensors = random_model(a, INPUT_SHAPE)
    logits = TorchBackend(tensors, a, "cpu").forward(batch)
    unflipped = reference(batch, tensors, a, flip=False)
    assert np.abs(logits - unflipped).max() > 1e-2


def test_torch_kernel_flips_and_reorders_a_flux_kernel():
    flux = np.arange(2 * 3 * 1 * 1, dtype=np.float32).reshape(2, 3, 1, 1)  # (kW=2, kH=3, Cin, Cout)
    kernel = torch_kernel(flux)
    assert kernel.shape == (1, 1, 3, 2)  # (Cout, Cin, kH, kW)
    # torch's [kh, kw] is Flux's [kW-1-kw, kH-1-kh]
    np.testing.assert_array_equal(kernel[0, 0], [[5, 2], [4, 1], [3, 0]])


def test_forward_takes_a_whole_batch_in_one_call():
    a = CASES["everything"]
    batch = np.random.default_rng(3).random((5, *INPUT_SHAPE), dtype=np.float32)
    backend = TorchBackend(random_model(a, INPUT_SHAPE), a, "cpu")
    together = backend.forward(batch)
    one_by_one = np.concatenate([backend.forward(batch[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-6, atol=1e-6)


def test_whcn_view_is_the_same_memory_in_flux_order():
    batch = np.random.default_rng(0).random((2, 3, 5, 4), dtype=np.float32)
    view = whcn_view(batch)
    assert view.shape == (4, 5, 3, 2)
    assert view.flags.f_contiguous and np.shares_memory(view, batch)
    assert view.__array_interface__["data"][0] == batch.__array_interface__["data"][0]
    assert view[3, 1, 2, 0] == batch[0, 2, 1, 3]


def test_fixture_logits_are_the_reference_and_the_torch_backend():
    batch = np.load(FIXTURES / "flux_cnn_input.npy")
    expected = np.load(FIXTURES / "flux_cnn_logits.npy")
    from fixtures.make_fixtures import ARCH as a
    tensors = weights.load(FIXTURES / "flux_cnn_weights.safetensors", a, batch.shape[1:])
    assert batch.shape == (2, 3, 16, 16) and expected.shape == (2, 5)
    np.testing.assert_allclose(
        TorchBackend(tensors, a, "cpu").forward(batch), expected, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(reference(batch, tensors, a), expected, rtol=1e-5, atol=1e-5)


def test_deep_fixture_logits_are_the_reference_and_the_torch_backend():
    from fixtures.make_fixtures import DEEP_ARCH as a

    batch = np.load(FIXTURES / "flux_cnn_input.npy")
    expected = np.load(FIXTURES / "flux_cnn_deep_logits.npy")
    tensors = weights.load(FIXTURES / "flux_cnn_deep_weights.safetensors", a, batch.shape[1:])
    assert sorted(tensors) == sorted(a.tensor_names()) and tensors["conv2.weight"].shape == (3, 3, 4, 8)
    assert tensors["dense.weight"].shape == (5, 8 * 4 * 4)
    np.testing.assert_allclose(
        TorchBackend(tensors, a, "cpu").forward(batch), expected, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(reference(batch, tensors, a), expected, rtol=1e-5, atol=1e-5)


def test_the_julia_backend_builds_every_block_from_its_tensors():
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend
    from fixtures.make_fixtures import DEEP_ARCH as a

    seen = {}

    class Flux:
        def build_model(self, kernels, biases, dense_weight, dense_bias, **options):
            seen.update(kernels=kernels, biases=biases, options=options)

    tensors = weights.glorot_init(a, (3, 16, 16), 0)
    backend = JuliaBackend.__new__(JuliaBackend)
    backend.flux = Flux()
    backend._build(tensors, a, False)
    assert isinstance(seen["kernels"], tuple) and len(seen["kernels"]) == 2
    assert seen["kernels"][1] is tensors["conv2.weight"] and seen["biases"][0] is tensors["conv.bias"]
    assert seen["options"]["pooling"] == "max" and seen["options"]["pad"] == 1


def test_the_julia_backend_hands_flux_the_batch_itself_and_reads_logits_back_per_image():
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend

    handed = {}

    class Logits:  # what juliacall returns for a Julia Matrix
        def __init__(self, array):
            self.array = array

        def to_numpy(self):
            return self.array.copy()

    class Forward:  # AilusionFlux.forward, called as juliacall calls it without the GIL
        def _jl_call_nogil(self, model, whcn):
            handed["whcn"] = whcn
            return Logits(
                np.stack([whcn.sum(axis=(0, 1, 2)), whcn.max(axis=(0, 1, 2))])
            )  # (outputs, N)

    backend = JuliaBackend.__new__(JuliaBackend)
    backend.flux, backend.model = type("Flux", (), {"forward": Forward()})(), None
    batch = np.random.default_rng(0).random((3, 2, 5, 4), dtype=np.float32)
    logits = backend._forward(batch)
    assert np.shares_memory(handed["whcn"], batch) and handed["whcn"].flags.f_contiguous
    assert logits.shape == (3, 2) and logits.flags.c_contiguous
    np.testing.assert_allclose(logits[:, 0], batch.sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(logits[:, 1], batch.max(axis=(1, 2, 3)))
