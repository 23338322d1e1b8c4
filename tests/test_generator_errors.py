"""Every bad generator value and every unavailable model is one clear error naming it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from PIL import Image

import ailusion
from ailusion.errors import AilusionError, ConfigError
from ailusion.plugins.stable_diffusion.hub import locate_model


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("generator.num_inference_steps=0", "generator.num_inference_steps", "at least 1"),
        ("generator.width=100", "generator.width", "multiple of 8, got 100"),
        ("generator.height=-8", "generator.height", "multiple of 8, got -8"),
        ("generator.batch_size=0", "generator.batch_size", "at least 1"),
        ("generator.guidance_scale=-1", "generator.guidance_scale", "at least 0"),
        ("generator.scheduler=eulerr", "generator.scheduler", "unknown scheduler 'eulerr'"),
        ("generator.dtype=float8", "generator.dtype", "float8"),
        ("generator.device=tpu", "generator.device", "tpu"),
        ("generator.compile=maybe", "generator.compile", "true or false"),
        ("prompts=[]", "prompts", "no prompts"),
    ],
)
def test_bad_value_is_a_config_error_naming_the_key(run_tiny, override, key, words):
    with pytest.raises(ConfigError) as error:
        run_tiny(override)
    assert error.value.key == key and words in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_model_folder_names_the_folder(run_tiny, tmp_path):
    folder = tmp_path / "not_a_pipeline"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"")
    with pytest.raises(AilusionError, match="not a diffusers pipeline folder") as error:
        run_tiny(f"generator.model={folder}", run_dir=tmp_path / "run")
    assert str(folder) in str(error.value) and "generator=tiny" in str(error.value)


def test_uncached_hub_id_offline_fails_fast_naming_it(run_tiny):
    started = time.monotonic()
    with pytest.raises(AilusionError, match="HF_HUB_OFFLINE") as error:
        run_tiny("generator.model=stabilityai/sd-turbbo")
    assert "stabilityai/sd-turbbo" in str(error.value) and "generator=tiny" in str(error.value)
    assert time.monotonic() - started < 30


def test_malformed_model_id_is_named(run_tiny):
    with pytest.raises(AilusionError, match="neither a folder nor a Hub id"):
        run_tiny("generator.model='not a model'")


def test_offline_error_reaches_the_command_line_as_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ailusion", "generator=tiny", "generator.model=owner/missing",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ailusion: error")]
    assert len(errors) == 1 and "owner/missing" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # a run that fails to start leaves nothing behind


@pytest.fixture
def silent_hub():
    """A server that accepts connections and never answers, like a Hub behind a black hole."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def serve():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for connection in accepted:
        connection.close()


@pytest.mark.slow
def test_unreachable_hub_does_not_hang(tmp_path, silent_hub):
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in offline}
    env.update(HF_ENDPOINT=silent_hub, HF_HUB_ETAG_TIMEOUT="2", HF_HUB_CACHE=str(tmp_path / "hub"))
    result = subprocess.run(
        [sys.executable, "-m", "ailusion", "generator=tiny", "generator.model=owner/uncached",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("ailusion: error")]
    assert len(errors) == 1 and "owner/uncached" in errors[0] and "cannot be reached" in errors[0]


def hub_error(cls):
    return cls("hub says no", response=SimpleNamespace(headers={}, request=None))


@pytest.fixture
def online(monkeypatch):
    """The Hub as if reachable: what ``model_info`` does is up to each test."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def answer(outcome):
        def model_info(*args, timeout=None, **kwargs):
            assert timeout == huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT  # never unbounded
            raise outcome

        monkeypatch.setattr(huggingface_hub, "model_info", model_info)

    return answer


def test_misspelt_hub_id_online_is_named(online):
    from huggingface_hub.errors import RepositoryNotFoundError

    online(hub_error(RepositoryNotFoundError))
    with pytest.raises(AilusionError, match="no model owner/misspelt .* on the Hub"):
        locate_model("owner/misspelt", None)


def test_gated_hub_model_asks_for_a_login(online):
    from huggingface_hub.errors import GatedRepoError

    online(hub_error(GatedRepoError))
    with pytest.raises(AilusionError, match="owner/gated is gated.*hf auth login"):
        locate_model("owner/gated", None)


def test_unreachable_hub_falls_back_on_the_cache(online, hub_cache):
    online(ConnectionError("no route to host"))
    assert locate_model("ailusion/tiny", None) == ("ailusion/tiny", True)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding the tiny pipeline as the Hub model ``ailusion/tiny``."""
    import huggingface_hub

    from ailusion.plugins.tiny_sd import ensure_tiny_pipeline

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--ailusion--tiny"
    shutil.copytree(ensure_tiny_pipeline(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_cached_hub_model_runs_offline(run_tiny, hub_cache, tmp_path):
    result = run_tiny("generator.model=ailusion/tiny", "generator.height=32",
                      "generator.width=32", run_dir=tmp_path / "run")
    with Image.open(result.image_paths[0]) as image:
        assert image.size == (32, 32) and image.text["model"] == "ailusion/tiny"


@pytest.fixture
def pickled_pipeline(tmp_path):
    """The tiny pipeline with its UNet saved as a pickle (.bin) file instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    from ailusion.plugins.tiny_sd import ensure_tiny_pipeline

    folder = tmp_path / "pickled"
    shutil.copytree(ensure_tiny_pipeline(), folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), weights.with_suffix(".bin"))
    weights.unlink()
    return folder


def test_pickle_weights_need_allow_pickle(run_tiny, pickled_pipeline, tmp_path, capfd):
    with pytest.raises(AilusionError, match="generator.allow_pickle=true") as error:
        run_tiny(f"generator.model={pickled_pipeline}", run_dir=tmp_path / "refused")
    assert str(pickled_pipeline) in str(error.value) and "\n" not in str(error.value)
    assert "error occurred" not in capfd.readouterr().err  # diffusers' own log, said once by us
    result = run_tiny(f"generator.model={pickled_pipeline}", "generator.allow_pickle=true",
                      "generator.height=32", "generator.width=32", run_dir=tmp_path / "allowed")
    assert len(result.image_paths) == 3
