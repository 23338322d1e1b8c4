"""``ailusion merge OUT_DIR SHARD_DIR…``: join the run dirs of shards into one dataset dir.

This module merges the ``imagefolder`` format; :mod:`.joins` the shard formats.

The shards of one run (``-m shard=0,1,2,3 num_shards=4``) each hold every ``num_shards``-th image,
numbered as in the whole run. Merging checks that together they hold each image exactly once,
then links (or copies) their files into ``OUT_DIR`` and rebuilds ``metadata.jsonl``, the arrays
(``preprocessed.npy``, or the chunks ``preprocessed/NNNNN.npy`` of a big run) and the predictions
in image order: the result is the run dir the unsharded
run would have written, and resumes as one. ``OUT_DIR`` appears only once it is complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import signals
from ..errors import AilusionError
from . import arrays, claim, files, joins, manifest, records
from .sheets import write_contact_sheet

#: What a finished run dir holds beside its images (the record of its config comes first).
NEEDED = (claim.RUN_FILE, manifest.MANIFEST, "preprocessed_index.json", "predictions.json",
          "predictions.npy")


def _read_shard(path: Path) -> dict:
    """A finished run dir's record, manifest rows, array order and predictions, each checked:
    paths stay inside the shard, rows are as written and name files with their recorded sha256."""
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise AilusionError(f"{path}: not a finished ailusion run dir (no {missing[0]})")
    for name in NEEDED:
        records.safe_path(path, name, path, "its file")  # a symlink out of the shard is refused
    record_path = path / claim.RUN_FILE
    record = records.check_run_record(records.read_json(record_path, RECOVER), record_path,
                                      RECOVER)
    rows = manifest.read_manifest(path, strict=True)
    for index, row in rows.items():
        damage = manifest.damage(path, row)
        if damage:
            raise AilusionError(f"{path}: image {index}: {damage}; {RECOVER_IMAGE}")
    order = records.check_index(records.read_json(path / "preprocessed_index.json"),
                                path / "preprocessed_index.json", path)
    if sorted(order) != sorted(row["file_name"] for row in rows.values()):
        raise AilusionError(f"{path}: {manifest.MANIFEST} and preprocessed_index.json disagree")
    if rows and not arrays.array_files(path):
        raise AilusionError(f"{path}: not a finished ailusion run dir (no {arrays.SINGLE} nor "
                            f"{arrays.CHUNKS}/)")
    predictions = records.check_predictions(records.read_json(path / "predictions.json"),
                                            path / "predictions.json", path)
    if sorted(p["file_name"] for p in predictions["images"]) != sorted(order):
        raise AilusionError(f"{path}: predictions.json and preprocessed_index.json disagree")
    if record.get("requests_sha256") is None:
        raise AilusionError(f"{path}: not a finished ailusion run dir (its run did not end); "
                            f"{RECOVER_IMAGE}")
    planned = [claim.request_of(rows[i]) for i in sorted(rows)]
    if claim.requests_digest(planned) != record["requests_sha256"]:
        raise AilusionError(f"{path}: its rows are not the images its run planned (a prompt, "
                            f"seed or source in {manifest.MANIFEST} was edited); {RECOVER_IMAGE}")
    _check_arrays(path, record, bool(rows))
    return {"path": path, "record": record, "config": record["config"], "rows": rows,
            "order": order, "predictions": predictions}


def _check_arrays(path: Path, record: dict, has_rows: bool) -> None:
    """The shard's arrays are the files its run wrote (the sha256 its record keeps), all of them."""
    recorded = record.get("files_sha256") or {}
    names = (arrays.array_files(path) if has_rows else []) + ["predictions.npy"]
    lost = sorted(name for name in recorded if name.startswith((arrays.SINGLE, arrays.CHUNKS))
                  and name not in names)
    if lost:
        raise AilusionError(f"{path}: {lost[0]} is missing; {RECOVER_IMAGE}")
    for name in names:
        if name not in recorded:
            raise AilusionError(f"{path}: its record keeps no sha256 of {name} (written by an "
                                f"older ailusion?); {RECOVER_IMAGE}")
        found = records.sha256_file(path / name)
        if found != recorded[name]:
            raise AilusionError(f"{path}: {name} differs from the file written (sha256 "
                                f"{(found or 'unreadable')[:12]}…, recorded "
                                f"{recorded[name][:12]}…); {RECOVER_IMAGE}")


#: How to recover a shard whose records or files are damaged.
RECOVER = records.RECOVER_RUN
RECOVER_IMAGE = "run that shard again with the same config to make it again, then merge"


def _load_array(path: Path, rows: int):
    """A float array file of a shard with ``rows`` rows (one per image), mapped (so a header
    declaring more than the file holds is refused, not allocated), or :func:`records.corrupt`."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise records.corrupt(path, f"not a readable .npy array: {exc}", RECOVER) from None
    if array.dtype.kind != "f":
        raise records.corrupt(path, f"holds {array.dtype} values, not floats", RECOVER)
    if array.ndim < 2 or array.shape[0] != rows:
        raise records.corrupt(path, f"shape {array.shape}, expected one row for each of the "
                              f"{rows} images", RECOVER)
    return array


def _check_shards(shards: list[dict]) -> int:
    """Fail unless the shards are the whole of one run, each image once; return the image count."""
    owner: dict[int, Path] = {}
    for shard in shards:
        for index in shard["rows"]:
            if index in owner:
                raise AilusionError(
                    f"image {index} is in both {owner[index]} and {shard['path']}: "
                    "these are not distinct shards of one run"
                )
            owner[index] = shard["path"]
    first = shards[0]["config"]
    for shard in shards[1:]:
        if {**shard["config"], "shard": 0} != {**first, "shard": 0}:
            raise AilusionError(
                f"{shard['path']} was made with another config than {shards[0]['path']} "
                "(only shard may differ)"
            )
        if shard["record"].get("prompts_sha256") != shards[0]["record"].get("prompts_sha256"):
            raise AilusionError(
                f"{shard['path']} was made from other prompts than {shards[0]['path']} "
                "(the prompts file's content differs)"
            )
        if shard["record"].get("plan_sha256") != shards[0]["record"].get("plan_sha256"):
            raise AilusionError(
                f"{shard['path']} was made from another plan than {shards[0]['path']} "
                "(its prompts, classes or source files differ)"
            )
    num_shards = int(first.get("num_shards", 1))
    missing = set(range(num_shards)) - {int(s["config"].get("shard", 0)) for s in shards}
    if missing:
        raise AilusionError(
            f"shard {min(missing)} of {num_shards} is missing: pass the run dir of every shard"
        )
    total = len(owner)  # images 1 … total, each once: then none is beyond total
    if not total or max(owner) != total:
        first_gap = next(i for i in range(1, total + 2) if i not in owner)
        raise AilusionError(f"image {first_gap} is in none of the shards")
    return total


def _place(source: Path, target: Path) -> None:
    if not source.is_file():
        raise AilusionError(f"{source}: missing, the shard is incomplete")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no copy of the pixels when both dirs share a file system
    except OSError:
        shutil.copy2(source, target)


def merge(out_dir: str | Path, shard_dirs: list[str | Path]) -> Path:
    """Merge the run dirs ``shard_dirs`` into the new dataset dir ``out_dir`` and return it."""
    out_dir, paths = Path(out_dir), [Path(p) for p in shard_dirs]
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AilusionError(f"{out_dir}: already exists and is not empty")
    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(paths):
        if resolved[i] in resolved[:i]:
            raise AilusionError(f"{path}: given twice")
    if not paths:
        raise AilusionError("no shard dirs to merge")
    formats = [joins.output_format(path) for path in paths]
    for path, fmt in zip(paths, formats):
        if fmt != formats[0]:
            raise AilusionError(f"{path} holds the {fmt} format but {paths[0]} the {formats[0]} "
                                "one: merge run dirs of one output format")
    if formats[0] == "imagefolder":
        shards = [_read_shard(path) for path in paths]
        total = _check_shards(shards)
        write = lambda tmp: _write(tmp, shards, total)  # noqa: E731
    else:
        parts = [joins.read(path) for path in paths]
        joins.check(parts)
        write = lambda tmp: _write_shards(tmp, out_dir, parts)  # noqa: E731

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_merges(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{MERGING}", dir=out_dir.parent))
    held = _hold(tmp)  # while this merge runs, no other one takes the dir for a stale one
    try:
        os.chmod(tmp, 0o777 & ~files._UMASK)  # mkdtemp makes it private; a dataset is not
        write(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(held)
    return out_dir


def _write_shards(tmp: Path, out_dir: Path, parts: list[dict]) -> None:
    joins.write(tmp, out_dir, parts)
    # Written once, as a run writes it: without requests_sha256, which a shard format's dir does
    # not need (each shard's stats hold its sha256) and which only every shard's rows would give.
    record = {k: v for k, v in parts[0]["record"].items()
              if k not in ("requests_sha256", "files_sha256")}
    write_record(tmp, [part["path"] for part in parts], record, {})


#: In the name of the dir a merge writes before renaming it into place: ``.OUT.merging.XXXX``.
MERGING = ".merging."


def _hold(path: Path) -> int:
    """An open descriptor of the dir ``path`` holding an exclusive ``flock`` on it."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def remove_stale_merges(parent: Path) -> None:
    """Remove the dirs in ``parent`` that killed merges left (``.*.merging.*``, held by no
    running merge); a merge that was killed leaves nothing for long."""
    for entry in parent.glob(f".*{MERGING}*"):
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            held = _hold(entry)
        except OSError:  # a merge still running holds it (or it is not ours to open)
            continue
        try:
            shutil.rmtree(entry, ignore_errors=True)
        finally:
            os.close(held)


def _write(out: Path, shards: list[dict], total: int) -> None:
    # 1. The images, and each one's rows of the arrays, at its index; a run that wrote its arrays
    #    in chunks is merged into chunks (of its output.shard_size), else into one file
    labels = shards[0]["predictions"]["labels"]
    chunked = any(arrays.array_files(s["path"]) not in ([], [arrays.SINGLE]) for s in shards)
    output = shards[0]["config"].get("output") or {}
    target = _MergedArrays(out, total, int(output.get("shard_size", total)) if chunked else None)
    rows, predicted, logits = {}, {}, None
    for shard in (s for s in shards if s["order"]):
        path = shard["path"]
        by_name = {row["file_name"]: row for row in shard["rows"].values()}
        shard_predicted = {p["file_name"]: p for p in shard["predictions"]["images"]}
        shard_arrays = arrays.Arrays(path, RECOVER)
        if len(shard_arrays) != len(shard["order"]):
            raise records.corrupt(path / shard_arrays.names[0], f"{len(shard_arrays)} rows, "
                                  f"expected one for each of the {len(shard['order'])} images",
                                  RECOVER)
        shard_logits = _load_array(path / "predictions.npy", len(shard["order"]))
        if shard_logits.shape[1] != len(labels):
            raise records.corrupt(path / "predictions.npy", f"{shard_logits.shape[1]} logits "
                                  f"per image, the labels are {len(labels)}", RECOVER)
        if target.row_shape is not None and shard_arrays.row_shape != target.row_shape:
            raise AilusionError(f"{path}: its arrays are of shape {shard_arrays.row_shape}, the "
                                f"other shards' {target.row_shape}")
        if logits is None:
            logits = np.zeros((total, shard_logits.shape[1]), dtype=shard_logits.dtype)
        index_of = lambda position: by_name[shard["order"][position]]["index"]  # noqa: E731
        linked = target.link_chunks(path, shard_arrays.spans(), index_of, shard_arrays.row_shape)
        for start in range(0, len(shard["order"]), _BLOCK):  # a block of rows at a time
            wanted = [p for p in range(start, min(start + _BLOCK, len(shard["order"])))
                      if p not in linked]
            block = shard_arrays.read(wanted, shard_arrays.dtype) if wanted else None
            at = {position: k for k, position in enumerate(wanted)}
            for position in range(start, min(start + _BLOCK, len(shard["order"]))):
                name = shard["order"][position]
                row = by_name[name]
                for key in records.FILE_KEYS:
                    if row.get(key):
                        _place(records.safe_path(path, row[key], path / manifest.MANIFEST, key),
                               records.safe_path(out, row[key], path / manifest.MANIFEST, key))
                if position not in linked:
                    target.put(row["index"] - 1, block[at[position]])
                logits[row["index"] - 1] = shard_logits[position]
                rows[row["index"]], predicted[row["index"]] = row, shard_predicted[name]
    array_names = target.close()

    # 2. Predictions, manifest and contact sheet, in image order
    ordered = [rows[i] for i in sorted(rows)]
    np.save(out / "predictions.npy", logits)
    files.write_json(out / "preprocessed_index.json", [row["file_name"] for row in ordered])
    files.write_json(out / "predictions.json", {
        "labels": labels,
        "images": [predicted[i] for i in sorted(predicted)],
    })
    manifest.write_manifest(out, rows)
    write_contact_sheet(out, ordered)

    # 3. The record of the unsharded run, so the merged dir resumes as that run's dir would
    requests = [claim.request_of(row) for row in ordered]
    write_record(out, [s["path"] for s in shards], shards[0]["record"], {
        "requests_sha256": claim.requests_digest(requests),
        "files_sha256": {name: records.sha256_file(out / name)
                         for name in (*array_names, "predictions.npy")},
    })


def write_record(out: Path, shard_dirs: list[Path], record: dict, finished: dict) -> None:
    """Make ``out`` the dataset dir of the unsharded run, in any format: its ``.ailusion.json``
    (the shards' record as of ``shard=0 num_shards=1``, with ``finished``), Hydra's config, and
    the run-wide files every shard holds (``classes.json``, the model's weights)."""
    files.write_json(out / claim.RUN_FILE, {
        **record, "config": {**record["config"], "shard": 0, "num_shards": 1}, **finished,
    })
    hydra_config = shard_dirs[0] / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        records.safe_path(shard_dirs[0], ".hydra/config.yaml", shard_dirs[0], "its file")
        try:
            saved = OmegaConf.merge(OmegaConf.load(hydra_config), {"shard": 0, "num_shards": 1})
        except Exception as exc:  # YAML or OmegaConf errors alike: the file is damaged
            reason = " ".join(str(exc).split())
            raise records.corrupt(hydra_config, f"not a config: {reason}", RECOVER) from None
        (out / ".hydra").mkdir()
        OmegaConf.save(saved, out / ".hydra" / "config.yaml")
    _copy_run_files(out, shard_dirs)


#: Rows of a shard's arrays read at once while merging.
_BLOCK = 256


class _MergedArrays:
    """The merged dir's arrays, written a row at a time at its image's position: one
    ``preprocessed.npy``, or chunks of ``chunk_rows`` rows (``None``: one file)."""

    def __init__(self, out: Path, total: int, chunk_rows: int | None):
        self.out, self.total, self.chunk_rows = out, total, chunk_rows
        self.row_shape, self._open, self._linked = None, {}, {}

    def link_chunks(self, shard: Path, spans, index_of, row_shape) -> set[int]:
        """Link (not copy) each chunk of ``shard`` that holds exactly the merged chunk of its name:
        a job of a big run wrote whole chunks of its own. Returns the shard positions linked."""
        done: set[int] = set()
        size = self.chunk_rows
        for name, positions in spans if size else ():
            number = int(Path(name).stem)
            first = number * size
            if (name == arrays.chunk_name(number) and len(positions)
                    == min(size, self.total - first) and all(
                        index_of(p) == first + 1 + k for k, p in enumerate(positions))):
                self.row_shape = self.row_shape or tuple(row_shape)
                _place(shard / name, self.out / name)
                self._linked[number] = name
                done.update(positions)
        return done

    def put(self, position: int, row: np.ndarray) -> None:
        self.row_shape = self.row_shape or tuple(row.shape)
        size = self.chunk_rows or self.total
        number, at = divmod(position, size)
        if number not in self._open:
            name = arrays.chunk_name(number) if self.chunk_rows else arrays.SINGLE
            (self.out / name).parent.mkdir(exist_ok=True)
            self._open[number] = (name, np.lib.format.open_memmap(
                self.out / name, mode="w+", dtype=row.dtype, version=(2, 0),
                shape=(min(size, self.total - number * size), *row.shape)))
        self._open[number][1][at] = row

    def close(self) -> list[str]:
        """Flush the files; return their names, in order."""
        for _, array in self._open.values():
            array.flush()
        names = {number: name for number, (name, _) in self._open.items()} | self._linked
        self._open.clear()
        return [names[number] for number in sorted(names)]


def _copy_run_files(out: Path, shard_dirs: list[Path]) -> None:
    """Link the run-wide files every shard holds (the model's weights, say): the shards share
    one config, so these are the same in each."""
    for source in sorted(shard_dirs[0].iterdir()):
        name = source.name
        for shard_dir in shard_dirs:  # no symlink leads out of a shard
            if (shard_dir / name).is_symlink():
                records.safe_path(shard_dir, name, shard_dir, "its file")
        if (source.is_file() and not name.startswith((".", "contact_sheet"))
                and not name.endswith(".log") and not (out / name).exists()
                and all((d / name).is_file() for d in shard_dirs[1:])):
            _place(source, out / name)


def merge_command(argv: list[str]) -> int:
    """``ailusion merge OUT_DIR SHARD_DIR…``; prints one line and returns 1 on a user error."""
    parser = argparse.ArgumentParser(
        prog="ailusion merge",
        description="Join the run dirs of the shards of one run into one dataset dir.",
    )
    parser.add_argument("out_dir", help="the dataset dir to create (must not exist or be empty)")
    parser.add_argument("shard_dirs", nargs="+", help="the run dir of every shard")
    args = parser.parse_args(argv)
    try:
        with signals.stop_cleanly():
            out = merge(args.out_dir, args.shard_dirs)
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, signals.Terminated) else "interrupted"
        print(f"ailusion merge: {how}; nothing was written: run the same command again",
              file=sys.stderr)
        return signals.exit_status(exc)
    except AilusionError as exc:
        print(f"ailusion merge: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only dir: nothing was written
        print(f"ailusion merge: error: {exc.filename or args.out_dir}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    stats = out / joins.STATS
    count = (records.read_json(stats)["count"] if stats.is_file()
             else len(manifest.read_manifest(out)))
    print(f"ailusion merge: {count} images from {len(args.shard_dirs)} shards → {out}")
    return 0
