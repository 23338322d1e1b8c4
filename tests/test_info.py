"""What a generator's ``GeneratedImage.info`` may hold and where it goes; the per-request RNG."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import ailusion
from ailusion import hookimpl
from ailusion.errors import AilusionError
from ailusion.manager import get_plugin_manager
from ailusion.stages import RESERVED_INFO_KEYS, GeneratedImage, ImageRequest, check_info, request_rng

from test_plugins import ThirdParty


class NoiseGenerator:
    """Noise drawn from each request's own RNG; ``info`` set by the test."""

    info: dict = {}

    def __init__(self, config, context):
        pass

    def plan(self, prompts):
        return [ImageRequest(i, p.text, None, 100 + i) for i, p in enumerate(prompts, 1)]

    def setup(self):
        pass

    def generate(self, requests):
        for r in requests:
            pixels = request_rng(r).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(pixels) if not NoiseGenerator.info.get("_black") else \
                Image.new("RGB", (8, 8))
            info = {k: v for k, v in NoiseGenerator.info.items() if k != "_black"}
            yield GeneratedImage(r, image, info)


class NoisePlugin(ThirdParty):
    @hookimpl
    def register_generators(self):
        return {"noise": NoiseGenerator}


def run(tmp_path, name="run", info=None, *overrides):
    NoiseGenerator.info = info or {}
    pm = get_plugin_manager()
    pm.register(NoisePlugin(), name="noise")
    run_dir = tmp_path / name
    ailusion.run(["generator.plugin=noise", "preprocessor.plugin=mean", "model.plugin=sum",
                  "prompts=[a,b,c,d,e]", "progress=false", *overrides], run_dir=run_dir, pm=pm)
    return run_dir


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metadata.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("key", ["file_name", "index", "prompt", "seed", "preprocessing"])
def test_a_reserved_info_key_fails_in_one_line_naming_the_plugin_and_the_key(tmp_path, key):
    with pytest.raises(AilusionError) as caught:
        run(tmp_path, info={key: "mine"})
    assert str(caught.value).startswith(
        f"generator.plugin: plugin 'noise' put {key!r} in GeneratedImage.info, a column "
        "ailusion writes itself (reserved: file_name, index,")
    assert not (tmp_path / "run" / "metadata.jsonl").exists() or rows(tmp_path / "run") == []


def test_numpy_values_in_info_become_plain_json(tmp_path):
    info = {"steps": np.int64(4), "scale": np.float32(0.5), "ok": np.bool_(True),
            "box": np.arange(3), "nested": {"k": [np.int32(2)]}}
    row = rows(run(tmp_path, info=info))[0]
    assert row["steps"] == 4 and row["scale"] == 0.5 and row["ok"] is True
    assert row["box"] == [0, 1, 2] and row["nested"] == {"k": [2]}


def test_a_value_that_is_not_json_fails_naming_the_key():
    with pytest.raises(AilusionError, match=r"^generator\.plugin: plugin 'x' put 'when' in "
                                            r"GeneratedImage\.info: a object is not JSON"):
        check_info("x", {"when": object()})
    assert set(RESERVED_INFO_KEYS) >= {"file_name", "index", "prompt", "label", "logits"}


def test_info_goes_to_the_manifest_and_its_provenance_keys_to_the_png(tmp_path):
    run_dir = run(tmp_path, info={"model": "noise-v1", "font": "DejaVu"})
    row = rows(run_dir)[0]
    assert row["model"] == "noise-v1" and row["font"] == "DejaVu"
    text = Image.open(run_dir / row["file_name"]).text
    assert text["model"] == "noise-v1" and text["seed"] == "101" and "font" not in text


def test_flagging_black_images_and_opting_out(tmp_path):
    assert all(r["flagged"] == "black" for r in rows(run(tmp_path, "a", {"_black": True})))
    opted = rows(run(tmp_path, "b", {"_black": True, "flagged": False}))
    assert not any(r["flagged"] for r in opted)
    assert all(r["flagged"] == "mine" for r in rows(run(tmp_path, "c", {"flagged": "mine"})))


def test_request_rng_depends_on_the_request_alone():
    a, b = ImageRequest(3, seed=7), ImageRequest(9, seed=7)
    assert request_rng(a).integers(1 << 30) == request_rng(b).integers(1 << 30)
    assert request_rng(a).integers(1 << 30) == np.random.default_rng(7).integers(1 << 30)
    assert request_rng(a, 1).integers(1 << 30) != request_rng(a, 2).integers(1 << 30)
    assert request_rng(ImageRequest(4)).integers(1 << 30) == np.random.default_rng(4).integers(1 << 30)


def test_a_generator_drawing_from_request_rng_makes_the_same_images_in_shards(tmp_path):
    whole = run(tmp_path, "whole")
    for shard in (0, 1):
        run(tmp_path, f"shard{shard}", None, f"shard={shard}", "num_shards=2")
    block = -(-len(rows(whole)) // 2)  # each job makes one range of consecutive images
    for row in rows(whole):
        shard = (row["index"] - 1) // block
        assert (tmp_path / f"shard{shard}" / row["file_name"]).read_bytes() == \
            (whole / row["file_name"]).read_bytes()


def npy_version(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        return tuple(f.read(8)[6:8])


def test_merge_writes_the_npy_header_versions_a_run_writes(tmp_path):
    from ailusion.rundir.merge import merge

    whole = run(tmp_path, "whole")
    shards = [run(tmp_path, f"shard{s}", None, f"shard={s}", "num_shards=2") for s in (0, 1)]
    merged = merge(tmp_path / "merged", shards)
    for name in ("preprocessed.npy", "predictions.npy"):
        assert npy_version(merged / name) == npy_version(whole / name), name
    assert np.array_equal(np.load(merged / "preprocessed.npy"), np.load(whole / "preprocessed.npy"))
