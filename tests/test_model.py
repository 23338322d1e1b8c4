"""The flux_cnn model stage: config checks, weights in Flux layout, and what a run writes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from safetensors.numpy import load_file, save_file

from ailusion.api import compose_config
from ailusion.errors import ConfigError
from ailusion.plugins.flux_cnn import model as flux_model
from ailusion.plugins.flux_cnn import weights
from ailusion.plugins.flux_cnn.model import FluxCNN
from ailusion.stages import StageContext


def model_config(**overrides):
    config = compose_config(["generator=tiny"]).model
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    return config


def make_model(tmp_path, **overrides):
    context = StageContext(config=OmegaConf.create({}), run_dir=tmp_path)
    return FluxCNN(model_config(**overrides), context)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("backend", "tensorflow", "must be one of auto, julia, torch"),
        ("device", "tpu", "must be one of auto, cpu, cuda"),
        ("activation", "gelu", "must be one of identity, relu, sigmoid, tanh"),
        ("pooling", "median", "must be one of null, max, mean"),
        ("kernel_size", 0, "must be a positive integer"),
        ("conv_layers", 0, "must be a positive integer"),
        ("pad", -1, "must be a non-negative integer"),
        ("labels", ["cat", "dog"], "has 2 names for model.num_outputs=10 outputs"),
        ("weights", "/nonexistent/w.safetensors", "no such file: /nonexistent/w.safetensors"),
    ],
)
def test_a_bad_model_key_is_named(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as error:
        make_model(tmp_path, **{key: value})
    assert error.value.key == f"model.{key}" and message in str(error.value)


def test_labels_default_to_output_numbers(tmp_path):
    assert make_model(tmp_path, num_outputs=3).labels == ["0", "1", "2"]
    assert make_model(tmp_path, num_outputs=2, labels=["cat", "dog"]).labels == ["cat", "dog"]


def test_glorot_init_is_flux_layout_seeded_and_bounded():
    arch = weights.Architecture(3, 8, "relu", 1, 0, None, 2, 10)
    first = weights.glorot_init(arch, (3, 32, 30), seed=0)
    assert {k: v.shape for k, v in first.items()} == {
        "conv.weight": (3, 3, 3, 8),
        "conv.bias": (8,),
        "dense.weight": (10, 8 * 30 * 28),
        "dense.bias": (10,),
    }
    assert all(v.dtype == np.float32 for v in first.values())
    conv_limit = np.sqrt(6 / (9 * 3 + 9 * 8))  # Flux's fans: kW*kH*Cin and kW*kH*Cout
    assert np.abs(first["conv.weight"]).max() <= conv_limit
    assert np.abs(first["conv.weight"]).max() > 0.9 * conv_limit
    assert not first["conv.bias"].any() and not first["dense.bias"].any()
    np.testing.assert_array_equal(
        first["dense.weight"], weights.glorot_init(arch, (3, 32, 30), 0)["dense.weight"]
    )
    assert not np.array_equal(
        first["conv.weight"], weights.glorot_init(arch, (3, 32, 30), 1)["conv.weight"]
    )


def test_save_writes_the_weights_in_flux_layout(tmp_path):
    model = make_model(tmp_path, backend="torch", kernel_size=5, out_channels=4, num_outputs=3)
    model.setup((1, 20, 24))
    assert not (tmp_path / "model_weights.safetensors").exists()  # setup writes nothing
    model.save(tmp_path)
    saved = load_file(tmp_path / "model_weights.safetensors")
    assert {k: v.shape for k, v in saved.items()} == {
        "conv.weight": (5, 5, 1, 4),
        "conv.bias": (4,),
        "dense.weight": (3, 4 * 16 * 20),
        "dense.bias": (3,),
    }


def test_weights_load_back_and_give_the_same_logits(tmp_path):
    first = make_model(tmp_path / "a", backend="torch", seed=7)
    (tmp_path / "a").mkdir()
    first.setup((3, 16, 16))
    first.save(tmp_path / "a")
    again = make_model(
        tmp_path / "b",
        backend="torch",
        seed=99,
        weights=str(tmp_path / "a" / "model_weights.safetensors"),
    )
    (tmp_path / "b").mkdir()
    again.setup((3, 16, 16))
    batch = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(first.forward(batch), again.forward(batch))
    assert first.forward(batch).shape == (4, 10)


def saved_weights(tmp_path, size=16):
    model = make_model(tmp_path, backend="torch")
    model.setup((3, size, size))
    model.save(tmp_path)
    return tmp_path / "model_weights.safetensors"


def test_saved_weights_are_the_same_bytes_in_every_process(tmp_path):
    # safetensors orders several metadata entries by hash, which differs between processes.
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
        "from test_model import saved_weights; "
        "print(saved_weights(Path(sys.argv[1])).read_bytes().hex())"
    )
    outputs = set()
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
        )
        outputs.add(proc.stdout)
    assert len(outputs) == 1


def test_weights_for_another_input_size_name_both_shapes(tmp_path):
    path = saved_weights(tmp_path, size=24)
    model = make_model(tmp_path, backend="torch", weights=str(path))
    with pytest.raises(ConfigError) as error:
        model.setup((3, 16, 16))
    message = str(error.value)
    assert error.value.key == "model.weights"
    assert "(made for inputs of shape (3, 24, 24)) has dense.weight (10, 3872)" in message
    assert "makes inputs of shape (3, 16, 16), which need (10, 1568)" in message
    assert "\n" not in message


def test_weights_with_missing_or_misshapen_tensors_name_them(tmp_path):
    tensors = load_file(saved_weights(tmp_path))
    broken = tmp_path / "broken.safetensors"
    save_file({k: v for k, v in tensors.items() if k != "dense.bias"}, str(broken))
    with pytest.raises(ConfigError, match=r"broken.safetensors lacks dense.bias \(expects"):
        make_model(tmp_path, backend="torch", weights=str(broken)).setup((3, 16, 16))
    save_file(tensors | {"conv.bias": np.zeros(5, np.float32)}, str(broken))
    with pytest.raises(
        ConfigError, match=r"conv.bias is \(5,\), expected \(8,\) for inputs of shape \(3, 16, 16\)"
    ):
        make_model(tmp_path, backend="torch", weights=str(broken)).setup((3, 16, 16))
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="cannot read .*broken.safetensors as safetensors"):
        make_model(tmp_path, backend="torch", weights=str(broken)).setup((3, 16, 16))


def test_an_input_smaller_than_the_kernel_is_a_config_error(tmp_path):
    with pytest.raises(
        ConfigError, match=r"inputs of shape \(3, 4, 4\) are smaller than the 5×5 kernel"
    ):
        make_model(tmp_path, backend="torch", kernel_size=5).setup((3, 4, 4))


def test_auto_without_julia_runs_torch_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(flux_model.julia_import, "find_julia", lambda: None)
    monkeypatch.setattr(flux_model, "_noticed", set())
    with caplog.at_level(logging.WARNING, logger="ailusion.plugins.flux_cnn"):
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            model = make_model(tmp_path / name, backend="auto")
            model.setup((3, 8, 8))
            assert model.backend.name == "torch"
    notices = [r.getMessage() for r in caplog.records if "PyTorch twin" in r.getMessage()]
    assert notices == [
        "model.backend=auto: no Julia executable found, running the PyTorch twin of the Flux model"
    ]


def test_a_run_writes_weights_labels_and_predictions(run_tiny):
    result = run_tiny(
        "preprocessor.size=32",
        "model.backend=torch",
        "model.num_outputs=3",
        "model.labels=[cat,dog,bird]",
    )
    saved = json.loads((result.run_dir / "predictions.json").read_text())
    assert saved["labels"] == ["cat", "dog", "bird"] and result.labels == ["cat", "dog", "bird"]
    assert result.predictions.shape == (3, 3)
    assert load_file(result.run_dir / "model_weights.safetensors")["dense.weight"].shape == (
        3,
        8 * 30 * 30,
    )
    again = run_tiny(
        "preprocessor.size=32",
        "model.backend=torch",
        "model.num_outputs=3",
        "model.seed=5",
        f"model.weights={result.run_dir / 'model_weights.safetensors'}",
        run_dir=result.run_dir.parent / "again",
    )
    np.testing.assert_allclose(again.predictions, result.predictions, rtol=1e-6)


def test_weights_for_colour_images_name_both_shapes_when_given_grayscale(tmp_path):
    path = saved_weights(tmp_path)
    with pytest.raises(ConfigError) as error:
        make_model(tmp_path, backend="torch", weights=str(path)).setup((1, 16, 16))
    assert str(error.value).endswith(
        "(made for inputs of shape (3, 16, 16)): conv.weight is (3, 3, 3, 8), "
        "expected (3, 3, 1, 8) for inputs of shape (1, 16, 16)"
    )


def test_conv_layers_stack_blocks_that_save_load_and_train(tmp_path):
    from ailusion.stages import TrainSettings

    deep = make_model(tmp_path / "a", backend="torch", conv_layers=2, pooling="max", pad=1)
    deep.setup((1, 12, 12))
    (tmp_path / "a").mkdir()
    deep.save(tmp_path / "a")
    saved = load_file(str(tmp_path / "a" / "model_weights.safetensors"))
    assert {k: v.shape for k, v in saved.items()} == {
        "conv.weight": (3, 3, 1, 8), "conv.bias": (8,), "conv2.weight": (3, 3, 8, 16),
        "conv2.bias": (16,), "dense.weight": (10, 16 * 3 * 3), "dense.bias": (10,),
    }
    batch = np.random.default_rng(0).random((6, 1, 12, 12), dtype=np.float32)
    labels = np.array([0, 1, 2, 3, 4, 5])
    again = make_model(tmp_path / "b", backend="torch", conv_layers=2, pooling="max", pad=1,
                       weights=str(tmp_path / "a" / "model_weights.safetensors"))
    again.setup((1, 12, 12))
    np.testing.assert_array_equal(deep.forward(batch), again.forward(batch))
    deep.train_setup(TrainSettings(num_classes=10, lr=0.01))
    losses = [deep.train_step(batch, labels)[0] for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    state = deep.train_state()
    assert "adam.m.conv2.weight" in state and "weights.conv2.bias" in state
    single = make_model(tmp_path / "c", backend="torch", pooling="max", pad=1,
                        weights=str(tmp_path / "a" / "model_weights.safetensors"))
    with pytest.raises(ConfigError, match=r"^model.weights: .* has unexpected conv2.bias, "
                                          r"conv2.weight .*for model.conv_layers=1"):
        single.setup((1, 12, 12))


def test_conv_layers_too_deep_for_the_input_names_the_block(tmp_path):
    model = make_model(tmp_path, backend="torch", conv_layers=3, pooling="max")
    with pytest.raises(ConfigError, match=r"^model.kernel_size: the convolution's 1×1 output "
                                          r"of conv block 2 is smaller than the 2×2 pooling"):
        model.setup((1, 8, 8))


# --- weights of other dtypes ---------------------------------------------------------------------


def weights_as(tmp_path, dtype, name="cast.safetensors", only=None):
    """The saved weights with every tensor (or only ``only``) cast to the torch ``dtype``."""
    import torch
    from safetensors.torch import save_file as save_torch

    tensors = {k: torch.from_numpy(v) for k, v in load_file(saved_weights(tmp_path)).items()}
    cast = {k: (v.to(dtype) if only in (None, k) else v) for k, v in tensors.items()}
    save_torch(cast, str(tmp_path / name))
    return tmp_path / name, cast


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16", "float64"])
def test_float_weights_of_other_widths_are_read_as_float32(tmp_path, dtype_name):
    import torch

    path, cast = weights_as(tmp_path, getattr(torch, dtype_name))
    loaded = weights.load(path, weights.Architecture.from_config(model_config()), (3, 16, 16))
    for name, tensor in cast.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], tensor.to(torch.float32).numpy())
    model = make_model(tmp_path, backend="torch", weights=str(path))
    model.setup((3, 16, 16))
    assert np.isfinite(model.forward(np.zeros((1, 3, 16, 16), np.float32))).all()


@pytest.mark.parametrize("dtype_name, stored", [
    ("int32", "I32"), ("int64", "I64"), ("bool", "BOOL"), ("uint8", "U8"),
    ("float8_e4m3fn", "F8_E4M3"),
])
def test_weights_of_other_dtypes_are_refused_naming_the_tensor(tmp_path, dtype_name, stored):
    import torch

    if not hasattr(torch, dtype_name):
        pytest.skip(f"torch has no {dtype_name}")
    path, _ = weights_as(tmp_path, getattr(torch, dtype_name), only="dense.bias")
    with pytest.raises(ConfigError) as error:
        make_model(tmp_path, backend="torch", weights=str(path)).setup((3, 16, 16))
    assert str(error.value) == (f"model.weights: {path}: tensor dense.bias is {stored}; weights "
                                "must be floats (F32, F16, BF16, F64)")


def test_float64_weights_beyond_float32_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    path, cast = weights_as(tmp_path, torch.float64)
    cast["conv.bias"][0] = 1e300
    save_torch(cast, str(path))
    with pytest.raises(ConfigError, match=r"tensor conv.bias \(F64\) holds values beyond float32"):
        make_model(tmp_path, backend="torch", weights=str(path)).setup((3, 16, 16))
