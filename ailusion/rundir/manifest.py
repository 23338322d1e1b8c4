"""The manifest of a run dir, ``metadata.jsonl``, and the names of the files its rows name.

The manifest follows the Hugging Face ``imagefolder`` layout: one JSON object per line with
``file_name`` (the generated image) and ``preprocessed_file_name`` (what the model saw), so
``datasets.load_dataset("imagefolder", data_dir=RUN_DIR)`` gives an ``image`` and a
``preprocessed`` column beside the metadata. Images the manifest does not name (the contact sheet)
are not rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import AilusionError
from . import records
from .files import json_safe, write_bytes, write_error

MANIFEST = "metadata.jsonl"


#: Images per subdir of a big run (two files each): a dir of at most a thousand files.
SUBDIR_IMAGES = 500


def generated_name(index: int, subdirs: bool = False) -> str:
    return f"{_subdir(index, subdirs)}generated_image_{index}.png"


def preprocessed_name(index: int, subdirs: bool = False) -> str:
    return f"{_subdir(index, subdirs)}preprocessed_image_{index}.png"


def _subdir(index: int, subdirs: bool) -> str:
    return f"{(index - 1) // SUBDIR_IMAGES:05d}/" if subdirs else ""


def dumps_row(row: dict) -> str:
    """One manifest line (sorted keys, so equal rows are equal bytes), sealed with the digest of
    its content (:func:`ailusion.rundir.records.seal`), so that a row edited by hand shows."""
    return json.dumps(records.seal(json_safe(row)), sort_keys=True, allow_nan=False) + "\n"


def read_manifest(run_dir: Path, strict: bool = False) -> dict[int, dict]:
    """The manifest rows of ``run_dir`` by image index, each checked by
    :func:`ailusion.rundir.records.check_row` (a row naming a path outside the dir, or of the wrong
    shape, is refused in one line). A line that is not JSON (the torn last line of a killed run)
    is skipped, its image made again, unless ``strict`` (a finished dir, as merge reads it)."""
    rows: dict[int, dict] = {}
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return rows
    recovery = "fix or delete that line (its image is then made again)"
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise AilusionError(f"{path}: cannot read: {exc.strerror or exc}") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            if strict:
                raise records.corrupt(f"{path}:{number}", f"not JSON: {exc}", recovery) from None
            continue
        records.check_row(row, run_dir, f"{path}:{number}", recovery)
        if row["index"] in rows:
            raise records.corrupt(f"{path}:{number}", f"a second row for image {row['index']}",
                                  recovery)
        rows[row["index"]] = row
    return rows


def damage(run_dir: Path, row: dict) -> str | None:
    """Why ``row`` (checked by :func:`read_manifest`) cannot be kept, or None when it is as it was
    written: sealed, and every file it names there with the sha256 recorded for it."""
    if not records.is_sealed(row):
        return "its row was changed after it was written"
    for name, digest in records.files_of(row):
        if digest is None:
            return f"its row records no sha256 for {name}"
        found = records.sha256_file(records.safe_path(run_dir, name, MANIFEST, name))
        if found is None:
            return f"{name} is missing"
        if found != digest:
            return f"{name} differs from the file written (sha256 {found[:12]}…, " \
                   f"recorded {digest[:12]}…)"
    return None


def is_complete(run_dir: Path, row: dict) -> bool:
    """True when ``row`` and every file it names are as they were written (see :func:`damage`)."""
    return damage(run_dir, row) is None


def write_manifest(run_dir: Path, rows: dict[int, dict]) -> None:
    """Replace the manifest with ``rows``, sorted by index, in one atomic rename."""
    text = "".join(dumps_row(rows[i]) for i in sorted(rows))
    write_bytes(Path(run_dir) / MANIFEST, text.encode("utf-8"))


class ManifestWriter:
    """Appends manifest rows, each one whole or not at all: a line the disk could not take is cut
    off again before the error is raised, so the manifest never ends in a torn row."""

    def __init__(self, run_dir: Path, rows: dict[int, dict] | None = None):
        """Append to the manifest of ``run_dir``, which holds ``rows`` (by index) already."""
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST
        # Whether the file is sorted by index and holds how many rows: rows appended in order
        # after the last one there need no rewrite at the end.
        self._last, self._count = max(rows or {}, default=0), len(rows or {})
        self._in_order = True
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise write_error(self.path, exc) from exc
        self._size = os.fstat(self._fd).st_size

    def append(self, row: dict) -> None:
        data = dumps_row(row).encode("utf-8")
        try:
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            os.ftruncate(self._fd, self._size)
            raise write_error(self.path, exc) from exc
        self._size += len(data)
        self._in_order = self._in_order and row["index"] > self._last
        self._last, self._count = max(self._last, row["index"]), self._count + 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finalize(self, rows: dict[int, dict]) -> None:
        """Have the manifest hold ``rows`` sorted by index, so a resumed run ends as an
        uninterrupted one: rewritten, unless the rows were appended in that order already."""
        self.close()
        if not (self._in_order and self._count == len(rows)):
            write_manifest(self.run_dir, rows)


def complete_rows(run_dir: Path, requests) -> dict[int, dict]:
    """The rows of ``run_dir``'s manifest that a resumed run keeps, by image index: each one
    planned, as it was written (sealed) and with its files' recorded sha256. Any other image is
    made again, with a warning saying why when its row was there."""
    import warnings

    from ..planning import request_of

    previous, planned = read_manifest(run_dir), request_of(requests)
    done = {}
    for index in sorted(previous):  # the rows there, not the plan: a plan is never listed
        request, row = planned(index), previous[index]
        if request is None:
            continue
        reason = damage(run_dir, row) or _unplanned(row, request)
        if reason is None:
            done[request.index] = row
        else:
            warnings.warn(f"{run_dir / MANIFEST}: image {request.index}: {reason}; "
                          "it is made again")
    return done


def _unplanned(row: dict, request) -> str | None:
    for key in ("prompt", "negative_prompt", "seed", "source", "label"):
        planned = getattr(request, key)
        if planned is not None and row.get(key) != planned:
            return f"its row's {key} is {row.get(key)!r}, the run plans {planned!r}"
    return None
