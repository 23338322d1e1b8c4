"""Class labels: the run's class list, where it comes from, and ``classes.json``.

A run is labelled when its config gives ``classes`` (or ``classes_file``), when its prompts file
has a ``label`` column, or when its generator finds classes itself (the folder generator's class
subfolders). Its class list is written once, as ``classes.json`` in the run dir
(``{"classes": ["cat", "dog"]}``); each manifest row then holds ``label``, the image's true class,
and ``label_id``, that class's number in the list. Unlabelled runs have neither.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .errors import AilusionError, ConfigError

CLASSES_FILE = "classes.json"


def check_classes(classes: Sequence, where: str) -> list[str]:
    """``classes`` as a list of names, or an error naming ``where``: each a non-blank string,
    none twice, at least one."""
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise ConfigError(where, f"must be a list of class names, got {classes!r}")
    names, seen = [], set()
    for number, name in enumerate(classes, start=1):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(where, f"class {number} is blank or not text: {name!r}")
        name = name.strip()
        if name in seen:
            raise ConfigError(where, f"class {name!r} is given twice")
        seen.add(name)
        names.append(name)
    if not names:
        raise ConfigError(where, "no classes")
    return names


def load_classes(config) -> list[str] | None:
    """The class list the config gives (``classes``, or ``classes_file``, which wins), or None.

    A classes file is ``.txt`` (one class per line; blank lines and ``#`` comments skipped) or
    ``.json`` (a list, or an object with a ``classes`` list, as a run's ``classes.json``).
    """
    path = config.get("classes_file")
    if path:
        return read_classes_file(Path(path))
    classes = config.get("classes")
    if classes is None or (not isinstance(classes, str) and len(classes) == 0):
        return None
    return check_classes(list(classes) if not isinstance(classes, str) else classes, "classes")


def read_classes_file(path: Path) -> list[str]:
    """Read a .txt or .json classes file (see :func:`load_classes`)."""
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".json"):
        raise ConfigError("classes_file", f"{path}: use a .txt or .json file")
    if not path.is_file():
        raise ConfigError("classes_file", f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("classes_file", f"cannot read {path}: {exc}") from None
    if suffix == ".txt":
        classes = [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    else:
        try:
            classes = json.loads(text)
        except ValueError as exc:
            raise ConfigError("classes_file", f"{path}: not JSON ({exc})") from None
        if isinstance(classes, dict):
            classes = classes.get("classes")
        if not isinstance(classes, list):
            raise ConfigError("classes_file", f"{path}: expected a list of class names "
                                              'or {"classes": [...]}')
    return check_classes(classes, f"classes_file: {path}")


def write_classes(run_dir: Path, classes: Sequence[str]) -> None:
    """Record the run's class list in ``RUN_DIR/classes.json``."""
    from .rundir.files import write_json

    write_json(Path(run_dir) / CLASSES_FILE, {"classes": list(classes)})


def read_classes(run_dir: str | Path) -> list[str] | None:
    """The class list of the run dir ``run_dir`` (from its ``classes.json``), or None for an
    unlabelled run; a file that is not a valid class list is an :class:`AilusionError` naming it."""
    path = Path(run_dir) / CLASSES_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AilusionError(f"{path}: not a readable class list ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("classes"), list):
        raise AilusionError(f'{path}: expected {{"classes": [NAME, ...]}}')
    try:
        return check_classes(record["classes"], str(path))
    except ConfigError as exc:
        raise AilusionError(str(exc)) from None


def class_ids(classes: Sequence[str] | None) -> dict[str, int] | None:
    """``{name: number}`` for a class list (None for an unlabelled run)."""
    return None if classes is None else {name: i for i, name in enumerate(classes)}


def check_request(request, ids: dict[str, int] | None, plugin: str) -> None:
    """Fail, naming the generator, when a request's label does not fit the run's class list."""
    if ids is None:
        if request.label is not None:
            raise AilusionError(
                f"generator {plugin!r} gave image {request.index} the label {request.label!r} "
                "in a run without classes (give classes=[...] or label the prompts)"
            )
        return
    if request.label not in ids:
        raise AilusionError(
            f"generator {plugin!r} gave image {request.index} the label {request.label!r}, "
            f"not one of the run's classes (copy each Prompt's label into its ImageRequest)"
        )
    if request.label_id is not None and request.label_id != ids[request.label]:
        raise AilusionError(
            f"generator {plugin!r} gave image {request.index} label_id {request.label_id} for "
            f"{request.label!r}, which is class {ids[request.label]}"
        )
