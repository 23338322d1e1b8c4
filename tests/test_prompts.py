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


# --- lines end at \n or \r\n only; every value is checked while planning -----------------------


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\r"])
def test_a_txt_line_ends_only_at_newline(tmp_path, separator):
    path = tmp_path / "p.txt"
    path.write_bytes(f"one{separator}half\r\ntwo\nthree\n".encode())
    prompts = load_prompts(config(prompts_file=str(path)))
    assert [p.text for p in prompts] == [f"one{separator}half", "two", "three"]


def test_jsonl_with_a_raw_line_separator_in_a_string_is_read(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes('{"prompt": "a\u2028b", "seed": 3}\r\n{"prompt": "c\x85d"}\n'.encode())
    assert load_prompts(config(prompts_file=str(path))) == [Prompt("a\u2028b", None, 3),
                                                            Prompt("c\x85d")]


def test_csv_is_read_as_the_csv_module_writes_it(tmp_path):
    import csv

    rows = [["prompt", "negative_prompt", "seed"], ["two\nlines, here", 'say "no"', "7"],
            ["cr\r\nlf", "", ""], ["sep\u2028arator", "x", "0"]]
    path = tmp_path / "p.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert load_prompts(config(prompts_file=str(path))) == [
        Prompt("two\nlines, here", 'say "no"', 7), Prompt("cr\r\nlf"),
        Prompt("sep\u2028arator", "x", 0),
    ]


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("big.jsonl", '{"prompt": "a"}\n{"prompt": "b", "seed": %d}\n' % 2**64,
         "big.jsonl:2: seed must be a whole number from 0 to 9223372036854775807, got 1844"),
        ("float.jsonl", '{"prompt": "a", "seed": 1.5}\n', "float.jsonl:1: seed must be"),
        ("bool.jsonl", '{"prompt": "a", "seed": true}\n', "bool.jsonl:1: seed must be"),
        ("nan.jsonl", '{"prompt": "a", "seed": NaN}\n', "nan.jsonl:1: seed must be"),
        ("big.csv", "prompt,seed\na,%d\n" % 2**63, "big.csv:2: seed must be a whole number"),
        ("unicode.csv", "prompt,seed\na,\u0663\n", "unicode.csv:2: seed must be"),
        ("number.jsonl", '{"prompt": 3}\n', "number.jsonl:1: blank or missing prompt"),
        ("neg.jsonl", '{"prompt": "a", "negative_prompt": ["x"]}\n',
         "neg.jsonl:1: negative_prompt must be text"),
        ("typo.jsonl", '{"prompt": "a", "sed": 3}\n', "typo.jsonl:1: unknown key 'sed'"),
        ("typo.csv", "prompt,negative\na,b\n", "typo.csv:2: unknown key 'negative'"),
        ("cells.csv", "prompt,seed\na,1,extra\n", "cells.csv:2: more cells than the header"),
        ("quote.csv", 'prompt\n"a\n', "quote.csv"),
    ],
)
def test_every_value_is_checked_naming_file_line_and_key(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_prompts(config(prompts_file=str(path)))
    message = str(error.value)
    assert error.value.key == "prompts_file" and words in message, message
    assert "\n" not in message


def test_a_bad_seed_fails_before_any_run_dir_exists(tmp_path):
    from fake_plugins import FAST, plugin_manager

    import ailusion

    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "seed": %d}\n' % 2**64)
    with pytest.raises(ConfigError, match="seed must be a whole number"):
        ailusion.run([*FAST, f"prompts_file={path}"], run_dir=tmp_path / "run", pm=plugin_manager())
    assert not (tmp_path / "run").exists()
    path.write_text('{"prompt": "a", "seed": 5}\n')  # the corrected file then runs there
    ailusion.run([*FAST, f"prompts_file={path}"], run_dir=tmp_path / "run", pm=plugin_manager())
