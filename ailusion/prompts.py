"""Where prompts come from: the ``prompts`` list, ``prompts_file`` (which wins when given), or a
class list (``classes`` or ``classes_file``) crossed with ``prompt_templates``.

A prompts file is one of:

- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped;
- ``.jsonl``: one JSON object per line, with a ``prompt`` and optional ``negative_prompt``,
  ``seed`` and ``label``;
- ``.csv``: a header row with a ``prompt`` column and optional ``negative_prompt``, ``seed`` and
  ``label`` columns (an empty cell means none), read by the csv module (a quoted cell may span
  lines).

Lines end at ``\n`` or ``\r\n`` only: a form feed, NEL or U+2028 is part of its prompt. A seed
is a whole number from 0 to 2**63 - 1.

Labels: with ``classes`` and no prompts file, every class × template is one prompt (``{class}``
in a template is the class name), in class order, each labelled with its class. A prompts file
with a ``label`` on its rows is labelled too: every row needs one, and the class list is
``classes`` when given (each label must be in it), else the labels sorted by name.

Every prompt, wherever it comes from, is then put into ``prompt_template`` where it says
``{prompt}`` (``prompt_template="a photo of {prompt}, 4k"``), and ``prompt_prefix`` and
``prompt_suffix`` are added as they are.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from .errors import ConfigError
from .labels import load_classes
from .stages import Prompt

FORMATS = (".txt", ".jsonl", ".csv")
DEFAULT_TEMPLATES = ("a photo of a {class}",)


class PromptList(list):
    """The run's prompts, with the run's class list (``classes``, None when unlabelled)."""

    def __init__(self, prompts=(), classes: list[str] | None = None):
        super().__init__(prompts)
        self.classes = classes


class ClassPrompts(Sequence):
    """Every class × template as one labelled prompt, computed from its number (never listed):
    prompt ``i`` is class ``i // len(templates)`` in template ``i % len(templates)``."""

    def __init__(self, classes: list[str], templates: list[str], wrap):
        self.classes, self.templates, self._wrap = classes, templates, wrap

    def __len__(self) -> int:
        return len(self.classes) * len(self.templates)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        label_id, t = divmod(i, len(self.templates))
        name = self.classes[label_id]
        text = self._wrap(self.templates[t].replace("{class}", name))
        return Prompt(text, label=name, label_id=label_id)


def load_prompts(config: DictConfig) -> Sequence[Prompt]:
    """Return the run's prompts (see the module docstring), with ``.classes``.

    An empty ``prompts`` list gives ``[]`` (a generator that needs prompts says so); a prompts
    file that is missing, empty, or has a blank prompt is a :class:`ConfigError`.
    """
    wrap = _wrapper(config)
    classes = load_classes(config)
    if config.get("prompts_file"):
        path = Path(config.prompts_file)
        prompts = read_prompts_file(path)
        if any(p.label is not None for p in prompts) or classes is not None:
            classes = _file_classes(path, prompts, classes)
            ids = {name: i for i, name in enumerate(classes)}
            prompts = [Prompt(p.text, p.negative_prompt, p.seed, p.label, ids[p.label])
                       for p in prompts]
    elif classes is not None:
        return ClassPrompts(classes, _templates(config), wrap)
    else:
        prompts = []
        for number, text in enumerate(config.get("prompts") or [], start=1):
            if not str(text).strip():
                raise ConfigError("prompts", f"prompt {number} is blank")
            prompts.append(Prompt(text=str(text)))
    return PromptList(
        [Prompt(wrap(p.text), p.negative_prompt, p.seed, p.label, p.label_id) for p in prompts],
        classes,
    )


def _wrapper(config: DictConfig):
    """The function that puts a prompt into ``prompt_template`` and adds the prefix and suffix."""
    template = config.get("prompt_template") or "{prompt}"
    if not isinstance(template, str) or "{prompt}" not in template:
        raise ConfigError("prompt_template", f"must contain {{prompt}} where the prompt goes, "
                                             f"got {template!r}")
    prefix, suffix = config.get("prompt_prefix") or "", config.get("prompt_suffix") or ""
    return lambda text: prefix + template.replace("{prompt}", text) + suffix


def _templates(config: DictConfig) -> list[str]:
    templates = config.get("prompt_templates")
    templates = list(DEFAULT_TEMPLATES) if templates is None else list(templates)
    if not templates:
        raise ConfigError("prompt_templates", "no templates: give at least one, with {class}")
    for number, template in enumerate(templates, start=1):
        if not isinstance(template, str) or "{class}" not in template:
            raise ConfigError("prompt_templates", f"template {number} must contain {{class}} "
                                                  f"where the class name goes, got {template!r}")
    return templates


def _file_classes(path: Path, prompts: list[Prompt], classes: list[str] | None) -> list[str]:
    """The class list of a labelled prompts file; every row must have a label from it."""
    for number, prompt in enumerate(prompts, start=1):
        if prompt.label is None:
            if classes is not None and all(p.label is None for p in prompts):
                raise ConfigError("prompts_file", f"{path} has no labels, but classes are given: "
                                                  "add a label column, or drop prompts_file to "
                                                  "make the prompts from prompt_templates")
            raise ConfigError("prompts_file", f"{path}: prompt {number} has no label (every "
                                              "prompt needs one when any has)")
        if classes is not None and prompt.label not in classes:
            raise ConfigError("prompts_file", f"{path}: prompt {number}: label {prompt.label!r} "
                                              f"is not one of classes ({', '.join(classes)})")
    return classes if classes is not None else sorted({p.label for p in prompts})


#: The keys a row of a .jsonl or .csv prompts file may have.
KEYS = ("prompt", "negative_prompt", "seed", "label")
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
    label = row.get("label")
    if isinstance(label, str):  # an empty CSV cell is no label
        label = label.strip() or None
    if label is not None and not isinstance(label, str):
        raise ConfigError("prompts_file", f"{path}:{number}: label must be text, got {label!r}")
    return Prompt(text=text.strip(), negative_prompt=negative or None,
                  seed=_seed(path, number, seed), label=label)


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
