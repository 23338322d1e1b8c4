"""What is read back from disk is checked here before anything is done with it.

Nothing a run dir holds is trusted: a manifest row, a record or a JSON file may have been edited,
truncated or planted. Every reader goes through the two validators of this module:

- :func:`safe_path` for a path taken from a file (a manifest row's ``file_name``, an entry of
  ``preprocessed_index.json``, a file listed in a run dir): it must be a plain relative path that
  stays inside its dir, also once symlinks are followed;
- :func:`check_row`, :func:`check_run_record` and the other ``check_*`` functions for what a
  record holds: the keys a reader needs, of the types it needs.

Either refuses in one line naming the file, the row or key, and how to recover
(:class:`CorruptError`). :func:`seal` and :func:`is_sealed` make a row's edits visible, and
:func:`sha256_file` checks the files a row names against the digests recorded when they were
written.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import AilusionError

#: The row key holding the digest of the rest of the row (see :func:`seal`).
SEAL = "row_sha256"
#: The keys of a manifest row naming a file, each with the key of that file's sha256.
FILE_KEYS = {"file_name": "file_sha256", "preprocessed_file_name": "preprocessed_file_sha256"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: What to do about a run dir whose records are damaged (the run cannot tell what it held).
RECOVER_RUN = "delete the dir (or move it away) and run that job again"


class CorruptError(AilusionError):
    """A file read back from disk is damaged or was changed; the message names it."""


class UnsafePathError(AilusionError):
    """A path read from a file would leave its dir."""


def corrupt(where: Any, detail: str, recovery: str = RECOVER_RUN) -> CorruptError:
    return CorruptError(f"{where}: corrupt ({detail}); {recovery}")


# --- paths -----------------------------------------------------------------------------------


def safe_path(base: Path, value: Any, source: Any, field: str) -> Path:
    """``base / value``, once ``value`` (read from ``source``'s ``field``) is a plain relative path
    (no ``..``, not absolute, no ``\\``, no empty or ``.`` part) that stays inside ``base`` when
    symlinks are followed; else :class:`UnsafePathError` naming ``source`` and ``field``."""
    if not is_plain_relative(value):
        raise UnsafePathError(
            f"{source}: {field} {value!r} is not a plain relative path inside its dir; "
            "refusing to use it"
        )
    base = Path(base)
    path = base / value
    root = base.resolve()
    if not path.resolve().is_relative_to(root) or path.resolve() == root:
        raise UnsafePathError(
            f"{source}: {field} {value!r} leads outside its dir (through a symlink); "
            "refusing to use it"
        )
    return path


def is_plain_relative(value: Any) -> bool:
    """True for a non-empty relative POSIX path without ``..``, ``.``, empty parts or ``\\``."""
    if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
        return False
    pure = PurePosixPath(value)
    return (bool(pure.parts) and value != "." and not pure.is_absolute()
            and pure.as_posix() == value and ".." not in pure.parts)


# --- JSON records ----------------------------------------------------------------------------


def read_json(path: Path, recovery: str = RECOVER_RUN) -> Any:
    """The JSON value in ``path``; a file that is not JSON (or not UTF-8) is :func:`corrupt`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise corrupt(path, "not UTF-8 text", recovery) from None
    except ValueError as exc:
        raise corrupt(path, f"not valid JSON: {exc}", recovery) from None
    except OSError as exc:
        raise AilusionError(f"{path}: cannot read: {exc.strerror or exc}") from None


def expect(value: Any, kind, where: Any, key: str, recovery: str = RECOVER_RUN) -> Any:
    """``value`` when it is of ``kind`` (a type or tuple; bool is never an int), else
    :func:`corrupt` naming ``key``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join("null" if k is type(None) else _TYPE_NAMES.get(k, k.__name__)
                            for k in kinds)
        shown = "missing" if value is _MISSING else f"{type(value).__name__} {_short(value)}"
        raise corrupt(where, f"{key} should be {names}, is {shown}", recovery)
    return value


_MISSING = object()
_TYPE_NAMES = {dict: "an object", list: "a list", str: "text", int: "an integer",
               float: "a number", bool: "true or false"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field(record: dict, key: str, kind, where: Any, recovery: str = RECOVER_RUN) -> Any:
    """``record[key]``, checked with :func:`expect` (a missing key is reported as missing)."""
    return expect(record.get(key, _MISSING), kind, where, key, recovery)


def check_run_record(record: Any, path: Path, recovery: str = RECOVER_RUN) -> dict:
    """A run dir's ``.ailusion.json``: an object with a ``config`` object, the plan's
    ``plan_sha256``, and once the run finished the made images' ``requests_sha256``."""
    expect(record, dict, path, "the record", recovery)
    field(record, "config", dict, path, recovery)
    digest = field(record, "plan_sha256", str, path, recovery)
    if not _HEX64.fullmatch(digest):
        raise corrupt(path, "plan_sha256 is not a sha256 digest", recovery)
    for key in ("requests_sha256", "prompts_sha256"):
        if record.get(key) is not None and not _HEX64.fullmatch(str(record[key])):
            raise corrupt(path, f"{key} is not a sha256 digest", recovery)
    for name, digest in expect(record.get("files_sha256", {}), dict, path, "files_sha256",
                               recovery).items():
        if not is_plain_relative(name) or not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise corrupt(path, f"files_sha256 holds {name!r}: {digest!r}", recovery)
    return record


def check_index(value: Any, path: Path, base: Path) -> list[str]:
    """``preprocessed_index.json``: a list of file names inside ``base``."""
    expect(value, list, path, "the index")
    for position, name in enumerate(value):
        safe_path(base, name, path, f"entry {position + 1}")
    return value


def check_predictions(value: Any, path: Path, base: Path) -> dict:
    """``predictions.json``: ``labels`` (text) and ``images`` (objects with a safe ``file_name``)."""
    expect(value, dict, path, "the predictions")
    for label in field(value, "labels", list, path):
        expect(label, str, path, "labels[]")
    for position, image in enumerate(field(value, "images", list, path)):
        where = f"{path}, images[{position}]"
        expect(image, dict, where, "the entry")
        safe_path(base, image.get("file_name"), where, "file_name")
    return value


# --- manifest rows ---------------------------------------------------------------------------

#: The keys every row has, with their types (None: the key may be null).
ROW_TYPES = {
    "index": (int,),
    "file_name": (str,),
    "prompt": (str, type(None)),
    "negative_prompt": (str, type(None)),
    "seed": (int, type(None)),
    "source": (str, type(None)),
}


def check_row(row: Any, base: Path, where: Any, recovery: str) -> dict:
    """One manifest row: an object with a positive ``index``, safe file names inside ``base``,
    and the types :data:`ROW_TYPES` names; else :func:`corrupt` (or :class:`UnsafePathError`)."""
    expect(row, dict, where, "the row", recovery)
    for key, kinds in ROW_TYPES.items():
        if key in row or key in ("index", "file_name"):
            field(row, key, kinds, where, recovery)
    if row["index"] < 1:
        raise corrupt(where, f"index should be at least 1, is {row['index']}", recovery)
    for key, digest_key in FILE_KEYS.items():
        if key in row:
            safe_path(base, row[key], where, key)
        digest = row.get(digest_key)
        if digest is not None and not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            raise corrupt(where, f"{digest_key} is not a sha256 digest", recovery)
    return row


def files_of(row: dict) -> list[tuple[str, str | None]]:
    """``(file name, recorded sha256 or None)`` for every file ``row`` names."""
    return [(row[key], row.get(digest)) for key, digest in FILE_KEYS.items() if row.get(key)]


def row_digest(row: dict) -> str:
    """The sha256 of ``row`` without its :data:`SEAL`, in its canonical JSON form."""
    body = {k: v for k, v in row.items() if k != SEAL}
    text = json.dumps(body, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(row: dict) -> dict:
    """``row`` with :data:`SEAL` set to its :func:`row_digest`, so that an edit shows."""
    return {**{k: v for k, v in row.items() if k != SEAL}, SEAL: row_digest(row)}


def is_sealed(row: dict) -> bool:
    """True when ``row`` holds the digest of its own content (it is as it was written)."""
    return row.get(SEAL) == row_digest(row)


def sha256_file(path: Path) -> str | None:
    """The sha256 of the file at ``path``, or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
