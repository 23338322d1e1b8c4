"""Lazy planning: requests computed from their number, shards read alone, runs of ten million
planned images that start as one of ten; ``ailusion plan``; guidance drawn per image."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

import ailusion
from ailusion.api import compose_config
from ailusion.dryrun import describe
from ailusion.errors import ConfigError
from ailusion.rundir.shards import job_requests
from ailusion.planning import Plan, Remaining, batches, digest, per_prompt
from ailusion.plugins.stable_diffusion import StableDiffusionGenerator, guidance_for
from ailusion.prompts import ClassPrompts
from ailusion.rundir import claim, manifest
from ailusion.stages import ImageRequest, Prompt, StageContext
from fake_plugins import FAST, NoiseGenerator, plugin_manager

TEN_MILLION = [*FAST, "classes=[c0,c1,c2,c3,c4,c5,c6,c7,c8,c9]",
               "generator.num_images_per_prompt=1000000"]


def test_per_prompt_is_arithmetic_on_the_index():
    prompts = [Prompt("a"), Prompt("b", "dark", seed=50, label="x", label_id=0)]
    plan = per_prompt(prompts, 3, seed=10, negative_prompt="blurry")
    assert len(plan) == 6
    assert list(plan) == [
        ImageRequest(1, "a", "blurry", 10), ImageRequest(2, "a", "blurry", 11),
        ImageRequest(3, "a", "blurry", 12),
        ImageRequest(4, "b", "dark", 50, None, "x", 0), ImageRequest(5, "b", "dark", 51, None, "x", 0),
        ImageRequest(6, "b", "dark", 52, None, "x", 0),
    ]
    assert plan[-1] == plan[5] and plan[4] in plan and ImageRequest(4, "a") not in plan


def test_a_shard_of_ten_million_reads_only_its_own_requests():
    calls = []
    prompts = ClassPrompts([f"c{i}" for i in range(10)], ["a {class}"], lambda t: t)
    plan = per_prompt(prompts, 1_000_000, seed=0)
    counting = Plan(len(plan), lambda index: calls.append(index) or plan.request(index))
    shard = job_requests(counting, 3, 1_000, 100)  # job 3 of 1,000, in blocks of 100 images
    assert len(shard) == 10_000 and calls == []
    assert [r.index for r in shard][:3] == [301, 302, 303]
    assert calls == [i for start in range(301, 10_000_001, 100_000)
                     for i in range(start, start + 100)]
    last = shard[-1]
    assert (last.index, last.prompt, last.label, last.label_id, last.seed) == (
        9_900_400, "a c9", "c9", 9, 9_900_399)


def test_remaining_and_batches_read_lazily():
    plan = per_prompt([Prompt("a")], 7)
    todo = Remaining(plan, {2: {}, 5: {}})
    assert len(todo) == 5 and [r.index for r in todo] == [1, 3, 4, 6, 7]
    assert [[r.index for r in b] for b in batches(todo, 2)] == [[1, 3], [4, 6], [7]]


def test_the_digest_is_of_the_inputs_the_same_for_every_shard():
    prompts = [Prompt("a"), Prompt("b")]
    plan = per_prompt(prompts, 5)
    assert digest(prompts, plan) == digest(prompts, per_prompt(prompts, 5))
    assert digest(prompts, plan) != digest([Prompt("a"), Prompt("c")], plan)
    assert digest(prompts, plan) != digest(prompts, per_prompt(prompts, 6))
    listed = list(plan)
    assert digest(prompts, listed) != digest(prompts, listed[:-1])  # a list: its requests


def test_a_run_planning_ten_million_lists_none_of_them(tmp_path, monkeypatch):
    made = []
    original = NoiseGenerator.plan

    def counting_plan(self, prompts):
        plan = original(self, prompts)
        return Plan(len(plan), lambda index: made.append(index) or plan.request(index))

    monkeypatch.setattr(NoiseGenerator, "plan", counting_plan)
    result = ailusion.run([*TEN_MILLION, "num_shards=2500000", "shard=1", "output.shard_size=4"], run_dir=tmp_path / "r",
                          pm=plugin_manager())
    rows = manifest.read_manifest(result.run_dir)
    assert sorted(rows) == [5, 6, 7, 8]  # job 1 makes block 1, of output.shard_size images
    assert [rows[i]["label"] for i in sorted(rows)] == ["c0"] * 4
    assert rows[5]["file_name"] == "00000/generated_image_5.png"  # the run's layout, not the job's
    assert (result.run_dir / "preprocessed" / "00001.npy").is_file()
    assert len(made) <= 3 * len(rows)  # its own requests, each read a few times at most
    assert set(made) == set(rows)
    record = json.loads((result.run_dir / claim.RUN_FILE).read_text())
    assert len(record["plan_sha256"]) == 64 and len(record["requests_sha256"]) == 64
    again = ailusion.run([*TEN_MILLION, "num_shards=2500000", "shard=1", "output.shard_size=4"], run_dir=tmp_path / "r",
                         pm=plugin_manager())
    assert again.summary["skipped"] == 4 and again.summary["written"] == 0


def test_every_shard_records_the_same_plan_digest(tmp_path):
    records = []
    for shard in (0, 1):
        run = ailusion.run([*FAST, "prompts=[a,b,c]", "num_shards=2", f"shard={shard}"],
                           run_dir=tmp_path / str(shard), pm=plugin_manager())
        records.append(json.loads((run.run_dir / claim.RUN_FILE).read_text()))
    assert records[0]["plan_sha256"] == records[1]["plan_sha256"]
    assert records[0]["requests_sha256"] != records[1]["requests_sha256"]


def test_ailusion_plan_describes_without_loading_a_model_or_torch(tmp_path):
    code = ("import json, sys; from ailusion.dryrun import describe; "
            "plan = describe(sys.argv[1:]); "
            "print(json.dumps({'torch': 'torch' in sys.modules, **plan}))")
    proc = subprocess.run(
        [sys.executable, "-c", code, "generator=tiny", "classes=[cat,dog]",
         'prompt_templates=["a {class}","the {class}"]', "generator.num_images_per_prompt=2500000",
         "num_shards=1000", "shard=999", "preprocessor.size=32"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["torch"] is False
    assert (plan["prompts"], plan["images"], plan["images_per_prompt"]) == (4, 10_000_000,
                                                                            2_500_000)
    assert plan["classes"] == {"cat": 5_000_000, "dog": 5_000_000}
    assert (plan["num_shards"], plan["shard_images"]) == (1000, 10_000)
    folder = plan["estimates"]["imagefolder"]
    assert folder["files"] == 2 * 10_000_000 + 8
    array = 3 * 32 * 32 * 4
    assert folder["per_image"]["array"] == array
    assert folder["bytes"] > 10_000_000 * array
    assert plan["shard_estimates"]["imagefolder"]["files"] == 2 * 10_000 + 8
    assert not list(tmp_path.iterdir())  # a dry run writes nothing


def test_ailusion_plan_cli_prints_a_table_and_errors_in_one_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "ailusion", "plan", "generator=tiny",
                         "classes=[cat,dog,owl]", "generator.num_images_per_prompt=4"],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "images        12" in ok.stdout and "cat: 4, dog: 4, owl: 4" in ok.stdout
    assert "imagefolder" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ailusion", "plan", "generator=tiny",
                          "classes=[cat,cat]"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip() == "ailusion plan: error: classes: class 'cat' is given twice"



@pytest.mark.parametrize("override, line", [
    ("output.format=tfrecord", "ailusion plan: error: output.format: no output format named "
     "'tfrecord' is installed (installed: imagefolder, parquet, webdataset)"),
    ("+output.shards_per_dir=3", "output.shards_per_dir"),
])
def test_ailusion_plan_refuses_an_output_a_run_would_refuse(override, line):
    bad = subprocess.run([sys.executable, "-m", "ailusion", "plan", "generator=tiny", override],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and line in bad.stderr

# --- guidance drawn per image ----------------------------------------------------------------


def make_generator(tmp_path, *overrides):
    config = compose_config(["generator=tiny", *overrides])
    generator = StableDiffusionGenerator(config.generator, StageContext(config, tmp_path))
    generator.info = {"model": "tiny"}  # what setup() would set, without loading the model
    return generator


def test_a_guidance_range_is_drawn_per_image_from_its_seed(tmp_path, monkeypatch):
    generator = make_generator(tmp_path, "generator.guidance_scale=[2,8]",
                               "generator.batch_size=4")
    calls = []

    def render(batch):
        calls.append([(r.index, guidance_for(generator.config.guidance_scale, r.seed))
                      for r in batch])
        return np.zeros((len(batch), 8, 8, 3)), [False] * len(batch)

    monkeypatch.setattr(generator, "render", render)
    requests = [ImageRequest(i, "a", None, 100 + i) for i in range(1, 9)]
    scales = [g.info["guidance_scale"] for g in generator.generate(requests)]
    assert all(2 <= s <= 8 for s in scales) and len(set(scales)) == 8
    assert scales == [guidance_for([2, 8], 100 + i) for i in range(1, 9)]
    assert scales == [round(s, 4) for s in scales]
    assert all(len(call) == 1 for call in calls)  # one scale per pipeline call
    again = [g.info["guidance_scale"] for g in generator.generate(requests[3:5])]
    assert again == scales[3:5]  # the same image, alone, gets the same scale


def test_one_guidance_scale_keeps_batches_whole(tmp_path, monkeypatch):
    generator = make_generator(tmp_path, "generator.guidance_scale=3", "generator.batch_size=4")
    sizes = []
    monkeypatch.setattr(generator, "render", lambda batch: (
        sizes.append(len(batch)) or np.zeros((len(batch), 8, 8, 3)), [False] * len(batch)))
    infos = [g.info for g in generator.generate(ImageRequest(i, "a", None, i) for i in range(1, 7))]
    assert sizes == [4, 2] and {i["guidance_scale"] for i in infos} == {3}


@pytest.mark.parametrize("value, words", [
    ("[8,2]", "needs 0 <= low <= high"),
    ("[1,2,3]", "two numbers"),
    ("[-1,2]", "needs 0 <= low <= high"),
    ("[a,2]", "two numbers"),
    ("-1", "at least 0"),
])
def test_bad_guidance_ranges_name_the_key(tmp_path, value, words):
    with pytest.raises(ConfigError, match=words) as error:
        make_generator(tmp_path, f"generator.guidance_scale={value}")
    assert error.value.key == "generator.guidance_scale"
