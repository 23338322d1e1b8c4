"""Where prompts come from: the ``prompts`` list, or ``prompts_file`` (which wins when given).

A prompts file is one of:

- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped;
- ``.jsonl``: one JSON object per line, with a ``prompt`` and optional ``negative_prompt``
  and ``seed``;
- ``.csv``: a header row with a ``prompt`` column and optional ``negative_prompt`` and ``seed``
  columns (an empty cell means none).

``prompt_prefix`` and ``prompt_suffix`` are added to every prompt as they are (include the
separator: ``prompt_prefix="a photo of "``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from omegaconf import DictConfig

from .errors import ConfigError
from .stages import Prompt

FORMATS = (".txt", ".jsonl", ".csv")


def load_prompts(config: DictConfig) -> list[Prompt]:
    """Return the run's prompts with ``prompt_prefix`` and ``prompt_suffix`` applied.

    An empty ``prompts`` list gives ``[]`` (a generator that needs prompts says so); a prompts
    file that is missing, empty, or has a blank prompt is a :class:`ConfigError`.
    """
    if config.get("prompts_file"):
        prompts = read_prompts_file(Path(config.prompts_file))
    else:
        prompts = []
        for number, text in enumerate(config.get("prompts") or [], start=1):
            if not str(text).strip():
                raise ConfigError("prompts", f"prompt {number} is blank")
            prompts.append(Prompt(text=str(text)))
    prefix, suffix = config.get("prompt_prefix") or "", config.get("prompt_suffix") or ""
    return [Prompt(prefix + p.text + suffix, p.negative_prompt, p.seed) for p in prompts]


def read_prompts_file(path: Path) -> list[Prompt]:
    """Read a .txt, .jsonl or .csv prompts file (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError("prompts_file", f"{path}: use a .txt, .jsonl or .csv file")
    if not path.is_file():
        raise ConfigError("prompts_file", f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("prompts_file", f"cannot read {path}: {exc}") from None
    if suffix == ".txt":
        rows = [
            (number, {"prompt": line.strip()})
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    elif suffix == ".jsonl":
        rows = [(n, _json_row(path, n, line)) for n, line in enumerate(text.splitlines(), 1)
                if line.strip()]
    else:
        reader = csv.DictReader(text.splitlines())
        if "prompt" not in (reader.fieldnames or []):
            raise ConfigError("prompts_file", f"{path}: no `prompt` column in the header row")
        rows = [(reader.line_num, row) for row in reader]
    prompts = [_prompt(path, number, row) for number, row in rows]
    if not prompts:
        raise ConfigError("prompts_file", f"{path} has no prompts")
    return prompts


def _json_row(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise ConfigError("prompts_file", f"{path}:{number}: not JSON ({exc})") from None
    if not isinstance(row, dict):
        raise ConfigError("prompts_file", f"{path}:{number}: expected a JSON object")
    return row


def _prompt(path: Path, number: int, row: dict) -> Prompt:
    text, negative, seed = row.get("prompt"), row.get("negative_prompt"), row.get("seed")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("prompts_file", f"{path}:{number}: blank or missing prompt")
    if negative is not None and not isinstance(negative, str):
        raise ConfigError("prompts_file", f"{path}:{number}: negative_prompt must be text")
    if isinstance(seed, str):  # a CSV cell
        seed = seed.strip() or None
        if seed is not None and seed.isdigit():
            seed = int(seed)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError("prompts_file", f"{path}:{number}: seed must be a whole number >= 0")
    return Prompt(text=text.strip(), negative_prompt=negative or None, seed=seed)
