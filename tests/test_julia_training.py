"""Flux trains as the twin does, through juliacall: run where a Julia executable exists."""

from __future__ import annotations

import numpy as np
import pytest

from ailusion.plugins.flux_cnn import julia_import, weights
from ailusion.stages import TrainSettings

from test_training_step import fixture_arch, read_fixture, tensors

pytestmark = [
    pytest.mark.julia,
    pytest.mark.skipif(
        julia_import.find_julia() is None,
        reason="no Julia executable: install Julia or set PYTHON_JULIACALL_EXE to run Flux",
    ),
]


def flux_trainer(arrays, meta, **changes):
    from ailusion.plugins.flux_cnn.julia_backend import JuliaBackend

    arch = fixture_arch(arrays, meta)
    settings = TrainSettings(
        num_classes=arch.num_outputs, lr=float(meta["lr"]),
        betas=(float(meta["beta1"]), float(meta["beta2"])), eps=float(meta["eps"]),
    )
    settings = TrainSettings(**{**settings.__dict__, **changes})
    return JuliaBackend(tensors(arrays, "before"), arch, device="cpu").trainer(settings)


def test_flux_reproduces_the_twins_training_step_fixture():
    arrays, meta = read_fixture()
    trainer = flux_trainer(arrays, meta)
    losses = []
    for _ in range(int(meta["steps"])):
        loss, logits = trainer.step(arrays["input"], arrays["labels"])
        assert logits.shape == (len(arrays["labels"]), arrays["before.dense.bias"].shape[0])
        losses.append(loss)
    assert losses[-1] < losses[0]
    after = trainer.weights()
    for name in weights.TENSORS:
        np.testing.assert_allclose(after[name], arrays[f"after.{name}"], rtol=1e-4, atol=1e-5)


def test_flux_and_the_twin_give_the_same_loss_and_logits_each_step():
    from ailusion.plugins.flux_cnn.torch_backend import TorchBackend

    arrays, meta = read_fixture()
    flux = flux_trainer(arrays, meta, weight_decay=0.01)
    twin = TorchBackend(tensors(arrays, "before"), fixture_arch(arrays, meta), "cpu").trainer(
        TrainSettings(num_classes=3, lr=float(meta["lr"]),
                      betas=(float(meta["beta1"]), float(meta["beta2"])),
                      eps=float(meta["eps"]), weight_decay=0.01))
    for _ in range(3):
        flux_loss, flux_logits = flux.step(arrays["input"], arrays["labels"])
        twin_loss, twin_logits = twin.step(arrays["input"], arrays["labels"])
        assert flux_loss == pytest.approx(twin_loss, rel=1e-5)
        np.testing.assert_allclose(flux_logits, twin_logits, rtol=1e-4, atol=1e-5)


def test_flux_train_state_resumes_exactly():
    arrays, meta = read_fixture()
    x, y = arrays["input"], arrays["labels"]
    straight = flux_trainer(arrays, meta)
    for _ in range(4):
        straight.step(x, y)
    first = flux_trainer(arrays, meta)
    first.step(x, y), first.step(x, y)
    second = flux_trainer(arrays, meta)
    second.load_state(first.state())
    second.step(x, y), second.step(x, y)
    for name, array in second.weights().items():
        np.testing.assert_array_equal(array, straight.weights()[name])
