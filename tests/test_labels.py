"""Labels at generation: classes × templates, labelled prompts files, class subfolders,
``classes.json``, and the manifest's true ``label`` beside the model's ``prediction``."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from PIL import Image

import ailusion
from ailusion.rundir import manifest as dataset
from ailusion.errors import AilusionError, ConfigError
from ailusion.labels import read_classes
from ailusion.prompts import load_prompts
from ailusion.stages import Prompt
from fake_plugins import FAST, plugin_manager


def config(**values):
    base = {"prompts": ["unused"], "prompts_file": None, "prompt_prefix": "", "prompt_suffix": "",
            "prompt_template": "{prompt}", "classes": [], "classes_file": None,
            "prompt_templates": ["a photo of a {class}"]}
    return OmegaConf.create({**base, **values})


def run_fast(run_dir, *overrides):
    return ailusion.run([*FAST, *overrides], run_dir=run_dir, pm=plugin_manager())


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / dataset.MANIFEST).read_text().splitlines()]


def test_each_class_times_template_is_a_labelled_prompt():
    prompts = load_prompts(config(classes=["cat", "dog", "owl"],
                                  prompt_templates=["a {class}", "a drawing of a {class}"],
                                  prompt_template="{prompt}, 4k"))
    assert prompts.classes == ["cat", "dog", "owl"]
    assert len(prompts) == 6
    assert list(prompts) == [
        Prompt("a cat, 4k", label="cat", label_id=0),
        Prompt("a drawing of a cat, 4k", label="cat", label_id=0),
        Prompt("a dog, 4k", label="dog", label_id=1),
        Prompt("a drawing of a dog, 4k", label="dog", label_id=1),
        Prompt("a owl, 4k", label="owl", label_id=2),
        Prompt("a drawing of a owl, 4k", label="owl", label_id=2),
    ]
    assert prompts[-1] == prompts[5] and prompts[1:3] == [prompts[1], prompts[2]]


def test_default_template_and_classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# animals\nzebra\n\nant\n")
    prompts = load_prompts(config(classes_file=str(path), classes=["ignored"]))
    assert list(prompts) == [Prompt("a photo of a zebra", label="zebra", label_id=0),
                             Prompt("a photo of a ant", label="ant", label_id=1)]
    as_json = tmp_path / "classes.json"
    as_json.write_text('{"classes": ["b", "a"]}')
    assert load_prompts(config(classes_file=str(as_json))).classes == ["b", "a"]


@pytest.mark.parametrize("values, key, words", [
    ({"classes": ["cat", "cat"]}, "classes", "given twice"),
    ({"classes": ["cat", " "]}, "classes", "class 2 is blank"),
    ({"classes": ["cat"], "prompt_templates": ["a cat"]}, "prompt_templates", "{class}"),
    ({"classes": ["cat"], "prompt_templates": []}, "prompt_templates", "no templates"),
    ({"prompt_template": "a photo of"}, "prompt_template", "{prompt}"),
    ({"classes_file": "nope.txt"}, "classes_file", "no such file"),
    ({"classes_file": "nope.yaml"}, "classes_file", ".txt or .json"),
])
def test_bad_classes_and_templates_name_the_key(values, key, words):
    with pytest.raises(ConfigError, match=words) as error:
        load_prompts(config(**values))
    assert error.value.key == key


def test_prompt_template_wraps_every_prompt():
    prompts = load_prompts(config(prompts=["a cat", "{odd} braces"],
                                  prompt_template="a photo of {prompt}, 4k"))
    assert prompts == [Prompt("a photo of a cat, 4k"), Prompt("a photo of {odd} braces, 4k")]
    assert prompts.classes is None


def test_prompts_file_labels_csv_and_jsonl(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,label,seed\na tabby,cat,3\na puppy,dog,\nan old cat,cat,\n")
    prompts = load_prompts(config(prompts_file=str(csv)))
    assert prompts.classes == ["cat", "dog"]  # sorted, as ImageFolder and datasets sort them
    assert [(p.text, p.label, p.label_id, p.seed) for p in prompts] == [
        ("a tabby", "cat", 0, 3), ("a puppy", "dog", 1, None), ("an old cat", "cat", 0, None)]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "x", "label": "dog"}\n{"prompt": "y", "label": "cat"}\n')
    ordered = load_prompts(config(prompts_file=str(jsonl), classes=["dog", "cat", "owl"]))
    assert ordered.classes == ["dog", "cat", "owl"]
    assert [(p.label, p.label_id) for p in ordered] == [("dog", 0), ("cat", 1)]


@pytest.mark.parametrize("text, classes, words", [
    ("prompt,label\na,cat\nb,\n", [], "prompt 2 has no label"),
    ("prompt,label\na,cat\n", ["dog"], "label 'cat' is not one of classes"),
    ("prompt\na\n", ["dog"], "has no labels, but classes are given"),
])
def test_bad_labelled_prompts_file_names_file_and_row(tmp_path, text, classes, words):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as error:
        load_prompts(config(prompts_file=str(path), classes=classes))
    assert error.value.key == "prompts_file" and str(path) in str(error.value)


def test_labelled_run_records_true_class_prediction_and_classes_json(tmp_path):
    result = run_fast(tmp_path / "run", "classes=[cat,dog]", "generator.num_images_per_prompt=2",
                      
                      'prompt_templates=["a {class}","the {class}"]')
    assert read_classes(result.run_dir) == ["cat", "dog"]
    got = rows(result.run_dir)
    assert [(r["index"], r["prompt"], r["label"], r["label_id"]) for r in got] == [
        (1, "a cat", "cat", 0), (2, "a cat", "cat", 0), (3, "the cat", "cat", 0),
        (4, "the cat", "cat", 0), (5, "a dog", "dog", 1), (6, "a dog", "dog", 1),
        (7, "the dog", "dog", 1), (8, "the dog", "dog", 1)]
    assert [r["seed"] for r in got] == list(range(8))
    for row in got:  # the model's top prediction, apart from the true class
        assert row["prediction"] == result.labels[max(range(len(row["logits"])),
                                                      key=row["logits"].__getitem__)]
        assert 0 < row["probability"] <= 1


def test_sharded_labelled_runs_keep_labels_and_classes(tmp_path):
    result = run_fast(tmp_path / "s1", "classes=[cat,dog,owl]", "shard=1", "num_shards=2")
    assert [(r["index"], r["label"], r["label_id"]) for r in rows(result.run_dir)] == [
        (3, "owl", 2)]
    assert read_classes(result.run_dir) == ["cat", "dog", "owl"]


@pytest.mark.parametrize("text, words", [
    ("not json", "not a readable class list"),
    ('["cat"]', 'expected {"classes"'),
    ('{"classes": ["cat", "cat"]}', "given twice"),
    ('{"classes": []}', "no classes"),
])
def test_read_classes_validates_the_file(tmp_path, text, words):
    (tmp_path / "classes.json").write_text(text)
    with pytest.raises(AilusionError, match=words) as error:
        read_classes(tmp_path)
    assert "classes.json" in str(error.value)


def test_unlabelled_run_has_no_classes_file(tmp_path):
    assert read_classes(tmp_path) is None


@pytest.fixture
def class_folders(tmp_path):
    root = tmp_path / "images"
    for name, colour, count in (("dog", (0, 0, 200), 2), ("cat", (200, 0, 0), 1)):
        (root / name / "more").mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8), colour).save(root / name / f"{i}.png")
    Image.new("RGB", (8, 8), (0, 0, 200)).save(root / "dog" / "more" / "deep.png")
    return root


def folder_run(folder, run_dir, *overrides):
    fast = [o for o in FAST if not o.startswith("generator")]
    return ailusion.run([*fast, "generator=folder", f"generator.path={folder}", *overrides],
                        run_dir=run_dir, pm=plugin_manager())


def test_folder_generator_takes_labels_from_class_subfolders(class_folders, tmp_path):
    result = folder_run(class_folders, tmp_path / "run")
    assert read_classes(result.run_dir) == ["cat", "dog"]
    got = [(r["source"].removeprefix(str(class_folders) + "/"), r["label"], r["label_id"])
           for r in rows(result.run_dir)]
    assert got == [("cat/0.png", "cat", 0), ("dog/0.png", "dog", 1), ("dog/1.png", "dog", 1),
                   ("dog/more/deep.png", "dog", 1)]
    ordered = folder_run(class_folders, tmp_path / "ordered", "classes=[dog,cat]")
    assert read_classes(ordered.run_dir) == ["dog", "cat"]
    assert [(r["label"], r["label_id"]) for r in rows(ordered.run_dir)][:2] == [
        ("dog", 0), ("dog", 0)]


@pytest.mark.parametrize("arrange, key, words", [
    (lambda root: (root / "owl").mkdir(), "generator.path", "class folder .*owl has no"),
    (lambda root: Image.new("RGB", (8, 8)).save(root / "stray.png"), "generator.path",
     "holds images and class subfolders"),
])
def test_bad_class_folders_are_one_line(class_folders, tmp_path, arrange, key, words):
    arrange(class_folders)
    with pytest.raises(ConfigError, match=words) as error:
        folder_run(class_folders, tmp_path / "run")
    assert error.value.key == key and not (tmp_path / "run").exists()


def test_classes_that_do_not_match_the_folders_are_named(class_folders, tmp_path):
    with pytest.raises(ConfigError, match="class 'owl' has no folder") as error:
        folder_run(class_folders, tmp_path / "run", "classes=[cat,dog,owl]")
    assert error.value.key == "classes"


@pytest.mark.parametrize("argument, prompt", [
    ("""'prompt_template="a photo of {prompt}, 4k"'""", "a photo of a red cube, 4k"),
    ("""'prompt_prefix="a photo of "'""", "a photo of a red cube"),
    ("""'prompt_suffix=", 4k"'""", "a red cube, 4k"),
])
def test_the_documented_shell_quoting_keeps_spaces_and_commas(argument, prompt):
    """The README's quoting, through a POSIX shell's word splitting, then Hydra's parser."""
    import shlex

    from ailusion.api import compose_config

    config = compose_config(["generator=tiny", "prompts=[a red cube]", *shlex.split(argument)])
    assert [p.text for p in load_prompts(config)] == [prompt]


def test_a_labelled_run_loads_with_datasets_label_and_prediction_apart(tmp_path):
    datasets = pytest.importorskip("datasets")
    run_fast(tmp_path / "run", "classes=[cat,dog]", "generator.num_images_per_prompt=2")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "run"), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded["label"] == ["cat", "cat", "dog", "dog"]
    assert loaded["label_id"] == [0, 0, 1, 1]
    assert all(isinstance(p, str) for p in loaded["prediction"])
