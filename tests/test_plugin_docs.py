"""docs/plugins.md's examples follow its own rules, and its testing recipe works uninstalled."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import ailusion
from ailusion import hookimpl
from ailusion.manager import get_plugin_manager
from ailusion.stages import Model

from test_plugins import ThirdParty

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def doc_module(marker: str) -> types.ModuleType:
    """The docs' python block containing ``marker``, as a module."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    source = next(b for b in blocks if marker in b)
    module = sys.modules["ailusion_doc_example"] = types.ModuleType("ailusion_doc_example")
    exec(compile(source, str(DOC), "exec"), module.__dict__)
    return module


def solid_run(tmp_path, name, *overrides):
    pm = get_plugin_manager()
    pm.register(ThirdParty(), name="third_party")  # its mean preprocessor and sum model
    pm.register(doc_module("class SolidGenerator"), name="solid")
    run_dir = tmp_path / name
    ailusion.run(["~generator", "+generator.plugin=solid", "preprocessor.plugin=mean",
                  "model.plugin=sum", "progress=false", *overrides], run_dir=run_dir, pm=pm)
    return [json.loads(line) for line in (run_dir / "metadata.jsonl").read_text().splitlines()]


def test_the_docs_generator_gives_image_i_seed_plus_i_minus_1(tmp_path):
    rows = solid_run(tmp_path, "a", "prompts=[x,y]", "+generator.seed=10",
                     "+generator.num_images_per_prompt=2")
    assert [(r["index"], r["prompt"], r["seed"]) for r in rows] == [
        (1, "x", 10), (2, "x", 11), (3, "y", 12), (4, "y", 13)]


def test_the_docs_generator_keeps_a_rows_own_seed(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "x", "seed": 50}\n{"prompt": "y"}\n')
    rows = solid_run(tmp_path, "b", f"prompts_file={prompts}", "+generator.num_images_per_prompt=2")
    assert [r["seed"] for r in rows] == [50, 51, 2, 3]


def test_the_docs_generator_makes_the_same_images_in_shards(tmp_path):
    whole = solid_run(tmp_path, "whole", "prompts=[a,b,c,d]")
    shard = solid_run(tmp_path, "odd", "prompts=[a,b,c,d]", "shard=1", "num_shards=2")
    for row in shard:
        assert (tmp_path / "odd" / row["file_name"]).read_bytes() == \
            (tmp_path / "whole" / row["file_name"]).read_bytes()
    assert len(whole) == 4 and [r["index"] for r in shard] == [3, 4]


def test_a_plugin_manager_given_to_run_contributes_its_config_options(tmp_path):
    conf = tmp_path / "conf"
    (conf / "generator").mkdir(parents=True)
    (conf / "generator" / "solid.yaml").write_text("plugin: solid\nseed: 5\n")

    class Options:
        @hookimpl
        def config_searchpath(self):
            return f"file://{conf}"

    pm = get_plugin_manager()
    pm.register(ThirdParty(), name="third_party")
    pm.register(doc_module("class SolidGenerator"), name="solid")
    pm.register(Options(), name="options")
    ailusion.run(["generator=solid", "preprocessor.plugin=mean", "model.plugin=sum",
                  "prompts=[x]", "progress=false"], run_dir=tmp_path / "run", pm=pm)
    row = json.loads((tmp_path / "run" / "metadata.jsonl").read_text().splitlines()[0])
    assert row["seed"] == 5


def test_save_is_part_of_the_model_protocol():
    assert "save" in Model.__dict__ and Model.save.__doc__.startswith("Optional")
