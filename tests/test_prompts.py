"""Prompts from the config list or from a .txt, .jsonl or .csv file."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from ailusion.errors import ConfigError
from ailusion.prompts import load_prompts
from ailusion.stages import Prompt


def config(**values):
    base = {"prompts": ["unused"], "prompts_file": None, "prompt_prefix": "", "prompt_suffix": ""}
    return OmegaConf.create({**base, **values})


def test_list_with_prefix_and_suffix():
    loaded = load_prompts(config(prompts=["a cat", "a dog"], prompt_prefix="a photo of ",
                                 prompt_suffix=", 4k"))
    assert loaded == [Prompt("a photo of a cat, 4k"), Prompt("a photo of a dog, 4k")]


def test_empty_list_gives_no_prompts():
    assert load_prompts(config(prompts=[])) == []


def test_blank_prompt_in_list_is_named():
    with pytest.raises(ConfigError, match="prompt 2 is blank") as error:
        load_prompts(config(prompts=["a cat", "  "]))
    assert error.value.key == "prompts"


def test_txt_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# my prompts\na cat\n\n  a dog  \n   # indented comment\n")
    assert load_prompts(config(prompts_file=str(path))) == [Prompt("a cat"), Prompt("a dog")]


def test_jsonl_reads_negative_prompt_and_seed(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a cat", "seed": 42}\n\n'
                    '{"prompt": "a dog", "negative_prompt": "blurry"}\n')
    assert load_prompts(config(prompts_file=str(path), prompt_suffix="!")) == [
        Prompt("a cat!", None, 42), Prompt("a dog!", "blurry", None)
    ]


def test_csv_reads_optional_columns_and_empty_cells(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('\ufeffprompt,negative_prompt,seed\n"a cat, sitting",,7\na dog,dark,\n')
    assert load_prompts(config(prompts_file=str(path))) == [
        Prompt("a cat, sitting", None, 7), Prompt("a dog", "dark", None)
    ]


def test_file_wins_over_the_list(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("from the file\n")
    assert load_prompts(config(prompts=["from the list"], prompts_file=str(path))) == [
        Prompt("from the file")
    ]


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("missing.txt", None, "no such file"),
        ("empty.txt", "\n# only a comment\n", "has no prompts"),
        ("empty.csv", "prompt,seed\n", "has no prompts"),
        ("prompts.yaml", "- a cat\n", "use a .txt, .jsonl or .csv file"),
        ("noprompt.csv", "text\na cat\n", "no `prompt` column"),
        ("blank.csv", "prompt\na cat\n  \n", "blank.csv:3: blank or missing prompt"),
        ("blank.jsonl", '{"prompt": "a"}\n{"prompt": ""}\n', "blank.jsonl:2: blank or missing"),
        ("broken.jsonl", '{"prompt": "a"\n', "broken.jsonl:1: not JSON"),
        ("list.jsonl", '["a cat"]\n', "expected a JSON object"),
        ("seed.jsonl", '{"prompt": "a", "seed": -1}\n', "seed must be a whole number"),
        ("seed.csv", "prompt,seed\na,x\n", "seed.csv:2: seed must be a whole number"),
    ],
)
def test_bad_prompts_file_is_one_line_naming_it(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as error:
        load_prompts(config(prompts_file=str(path)))
    message = str(error.value)
    assert error.value.key == "prompts_file" and words in message and name in message
    assert "\n" not in message
