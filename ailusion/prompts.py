"""Where prompts come from: the ``prompts`` list, or ``prompts_file`` (which wins when given).

A prompts file is one of:

- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped;
- ``.jsonl``: one JSON object per line, with a ``prompt`` and optional ``negative_prompt``
  and ``seed``;
- ``.csv``: a header row with a ``prompt`` column and optional ``negative_prompt`` and ``seed``
  columns (an empty cell means none), read by the csv module (a quoted cell may span lines).

Lines end at ``\n`` or ``\r\n`` only: a form feed, NEL or U+2028 is part of its prompt. A seed
is a whole number from 0 to 2**63 - 1.

``prompt_prefix`` and ``prompt_suffix`` are added to every prompt as they are (include the
separator: ``prompt_prefix="a photo of "``).
"""

from __future__ import annotations

import csv
import io
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


#: The keys a row of a .jsonl or .csv prompts file may have.
KEYS = ("prompt", "negative_prompt", "seed")
#: The largest seed a row may give: a generator adds the image's number within the prompt to it,
#: and torch takes seeds below 2**64.
MAX_SEED = 2**63 - 1


def read_prompts_file(path: Path) -> list[Prompt]:
    """Read a .txt, .jsonl or .csv prompts file (see the module docstring). Every value is
    checked here, before any run dir exists: a bad one is one :class:`ConfigError` naming the
    file, the line and the key."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError("prompts_file", f"{path}: use a .txt, .jsonl or .csv file")
    if not path.is_file():
        raise ConfigError("prompts_file", f"no such file: {path}")
    try:  # bytes, decoded here: Python's text mode would also end lines at a lone \r
        text = path.read_bytes().decode("utf-8-sig")  # -sig: spreadsheets often add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("prompts_file", f"cannot read {path}: {exc}") from None
    if suffix == ".txt":
        rows = [
            (number, {"prompt": line.strip()})
            for number, line in lines(text)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    elif suffix == ".jsonl":
        rows = [(n, _json_row(path, n, line)) for n, line in lines(text) if line.strip()]
    else:
        rows = _csv_rows(path, text)
    prompts = [_prompt(path, number, row) for number, row in rows]
    if not prompts:
        raise ConfigError("prompts_file", f"{path} has no prompts")
    return prompts


def lines(text: str) -> list[tuple[int, str]]:
    """``(number, line)`` for each line of ``text``: lines end at ``\n`` or ``\r\n`` only
    (``str.splitlines`` would also end them at form feeds, U+2028 and other separators)."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [(number, part.removesuffix("\r")) for number, part in enumerate(parts, start=1)]


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """The rows of a CSV file as the csv module reads it (a quoted cell may hold newlines)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA, strict=True)
    start = 1
    try:
        if "prompt" not in (reader.fieldnames or []):
            raise ConfigError("prompts_file", f"{path}: no `prompt` column in the header row")
        rows, start = [], reader.line_num + 1  # the line the next row starts at
        for row in reader:
            if row.get(_EXTRA):
                raise ConfigError("prompts_file", f"{path}:{start}: more cells than the header "
                                                  "row has columns")
            rows.append((start, {k: v for k, v in row.items() if v is not None}))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ConfigError("prompts_file", f"{path}:{start}: not CSV ({exc})") from None
    return rows


_EXTRA = object()  # DictReader's key for the cells past the header's columns
def _json_row(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise ConfigError("prompts_file", f"{path}:{number}: not JSON ({exc})") from None
    if not isinstance(row, dict):
        raise ConfigError("prompts_file", f"{path}:{number}: expected a JSON object")
    return row


def _prompt(path: Path, number: int, row: dict) -> Prompt:
    unknown = [key for key in row if key not in KEYS]
    if unknown:
        raise ConfigError("prompts_file", f"{path}:{number}: unknown key {str(unknown[0])!r} "
                                          f"(a row may have {', '.join(KEYS)})")
    text, negative, seed = row.get("prompt"), row.get("negative_prompt"), row.get("seed")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("prompts_file", f"{path}:{number}: blank or missing prompt")
    if negative is not None and not isinstance(negative, str):
        raise ConfigError("prompts_file", f"{path}:{number}: negative_prompt must be text, "
                                          f"got {negative!r}")
    return Prompt(text=text.strip(), negative_prompt=negative or None,
                  seed=_seed(path, number, seed))


def _seed(path: Path, number: int, seed):
    """A row's seed: a whole number in [0, :data:`MAX_SEED`] (a CSV cell of digits), or None."""
    given = seed
    if isinstance(seed, str):  # a CSV cell
        seed = seed.strip() or None
        if seed is not None and seed.isascii() and seed.isdigit():
            seed = int(seed)
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError("prompts_file", f"{path}:{number}: seed must be a whole number from 0 "
                                          f"to {MAX_SEED}, got {given!r}")
    return seed
