"""The twin's training step: against the shared fixture, and against a NumPy rendering of the
gradient and of Optimisers.jl's Adam written from their definitions."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ailusion.plugins.flux_cnn import weights
from ailusion.plugins.flux_cnn.torch_backend import TorchBackend
from ailusion.stages import TrainSettings

from numpy_training import adam_steps, loss_and_gradient

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import make_train_fixture  # noqa: E402


def read_fixture():
    from safetensors import safe_open

    with safe_open(str(FIXTURES / "flux_cnn_train_step.safetensors"), "numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def fixture_arch(arrays, meta):
    kw, _, _, cout = arrays["before.conv.weight"].shape
    return weights.Architecture(
        kernel_size=kw, out_channels=cout, activation=meta["activation"],
        stride=int(meta["stride"]), pad=int(meta["pad"]),
        pooling=None if meta["pooling"] == "none" else meta["pooling"],
        pool_size=int(meta["pool_size"]), num_outputs=arrays["before.dense.bias"].shape[0],
    )


def tensors(arrays, prefix):
    return {n: arrays[f"{prefix}.{n}"] for n in weights.TENSORS}


def test_the_fixture_holds_what_it_says():
    arrays, meta = read_fixture()
    assert set(meta) == {"steps", "lr", "beta1", "beta2", "eps", "activation", "stride", "pad",
                         "pooling", "pool_size"}
    assert arrays["input"].dtype == np.float32 and arrays["input"].ndim == 4
    assert arrays["labels"].dtype == np.int64 and arrays["labels"].shape == arrays["input"].shape[:1]
    for name in weights.TENSORS:
        assert arrays[f"before.{name}"].shape == arrays[f"after.{name}"].shape
        assert not np.allclose(arrays[f"before.{name}"], arrays[f"after.{name}"])
    # Flux layout: (kW, kH, Cin, Cout) and (out, features).
    assert arrays["before.conv.weight"].shape[2] == arrays["input"].shape[1]
    shapes = fixture_arch(arrays, meta).shapes(arrays["input"].shape[1:])
    assert all(arrays[f"before.{n}"].shape == shapes[n] for n in weights.TENSORS)


def test_the_script_writes_the_fixture_as_committed():
    arrays, meta = read_fixture()
    made = make_train_fixture.make()
    assert meta == make_train_fixture.settings_metadata()
    for name, array in made.items():
        np.testing.assert_allclose(array, arrays[name], rtol=0, atol=1e-6, err_msg=name)


def test_the_twin_reproduces_the_fixture_from_its_settings():
    arrays, meta = read_fixture()
    arch = fixture_arch(arrays, meta)
    settings = TrainSettings(
        num_classes=arch.num_outputs, lr=float(meta["lr"]),
        betas=(float(meta["beta1"]), float(meta["beta2"])), eps=float(meta["eps"]),
    )
    trainer = TorchBackend(tensors(arrays, "before"), arch, "cpu").trainer(settings)
    for _ in range(int(meta["steps"])):
        trainer.step(arrays["input"], arrays["labels"])
    after = trainer.weights()
    for name in weights.TENSORS:
        np.testing.assert_allclose(after[name], arrays[f"after.{name}"], rtol=1e-5, atol=1e-6)


def numpy_arch(arch):
    return dict(activation=arch.activation, stride=arch.stride, pad=arch.pad,
                pooling=arch.pooling, pool_size=arch.pool_size)


CASES = {
    "fixture": {},
    "tanh, mean pooling": dict(activation="tanh", pooling="mean", pool_size=2),
    "sigmoid, no pooling, stride 1": dict(activation="sigmoid", pooling=None, stride=1, pad=0),
    "identity, kernel 2": dict(activation="identity", kernel_size=2, pad=0),
}


@pytest.mark.parametrize("changes", CASES.values(), ids=CASES.keys())
def test_the_twins_gradient_and_adam_match_numpy(changes):
    from dataclasses import replace

    arrays, _ = read_fixture()
    arch = replace(make_train_fixture.ARCH, **changes)
    before = weights.glorot_init(arch, arrays["input"].shape[1:], seed=4)
    rng = np.random.default_rng(1)
    before = {n: t + rng.uniform(-0.1, 0.1, t.shape).astype(np.float32) for n, t in before.items()}
    settings = TrainSettings(num_classes=3, lr=0.02, betas=(0.8, 0.95), eps=1e-6,
                             weight_decay=0.05)

    # One step's loss and gradient, autograd against the hand-derived one.
    loss, grads = loss_and_gradient(arrays["input"], arrays["labels"], before, **numpy_arch(arch))
    trainer = TorchBackend(before, arch, "cpu").trainer(settings)
    twin_loss, logits = trainer.step(arrays["input"], arrays["labels"])
    assert twin_loss == pytest.approx(loss, rel=1e-5)
    assert logits.shape == (len(arrays["labels"]), 3)
    for name, param in trainer.params.items():
        from ailusion.plugins.flux_cnn.torch_backend import flux_layout

        grad = flux_layout(param.grad.numpy())
        np.testing.assert_allclose(grad, grads[name], rtol=1e-4, atol=1e-6, err_msg=name)

    # Four Adam steps with weight decay, the twin against Optimisers.jl's formula.
    for _ in range(3):
        trainer.step(arrays["input"], arrays["labels"])
    expected, losses = adam_steps(
        arrays["input"], arrays["labels"], before, 4, settings.lr, settings.betas, settings.eps,
        settings.weight_decay, **numpy_arch(arch),
    )
    assert losses[-1] < losses[0]
    for name, array in trainer.weights().items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-4, atol=2e-5, err_msg=name)


def test_the_numpy_gradient_is_the_derivative_of_its_loss():
    """Finite differences: the hand-derived gradient is not checked only against torch."""
    arrays, meta = read_fixture()
    arch = fixture_arch(arrays, meta)
    before = {n: arrays[f"before.{n}"].astype(np.float64) for n in weights.TENSORS}
    x, y = arrays["input"], arrays["labels"]
    _, grads = loss_and_gradient(x, y, before, **numpy_arch(arch))
    rng = np.random.default_rng(0)
    for name in weights.TENSORS:
        for _ in range(3):
            at = tuple(rng.integers(0, s) for s in before[name].shape)
            h = 1e-6
            plus, minus = ({**before, name: before[name].copy()} for _ in range(2))
            plus[name][at] += h
            minus[name][at] -= h
            numeric = (loss_and_gradient(x, y, plus, **numpy_arch(arch))[0]
                       - loss_and_gradient(x, y, minus, **numpy_arch(arch))[0]) / (2 * h)
            assert grads[name][at] == pytest.approx(numeric, rel=1e-4, abs=1e-8), (name, at)


def test_train_state_resumes_exactly():
    arrays, meta = read_fixture()
    arch = fixture_arch(arrays, meta)
    settings = TrainSettings(num_classes=3, lr=0.01)
    x, y = arrays["input"], arrays["labels"]
    straight = TorchBackend(tensors(arrays, "before"), arch, "cpu").trainer(settings)
    for _ in range(4):
        straight.step(x, y)
    first = TorchBackend(tensors(arrays, "before"), arch, "cpu").trainer(settings)
    first.step(x, y), first.step(x, y)
    state = first.state()
    assert int(state["adam.step"][0]) == 2
    second = TorchBackend(tensors(arrays, "after"), arch, "cpu").trainer(settings)
    second.load_state(state)
    second.step(x, y), second.step(x, y)
    for name, array in second.weights().items():
        np.testing.assert_array_equal(array, straight.weights()[name])
