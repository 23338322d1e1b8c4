"""``ailusion merge OUT_DIR SHARD_DIR…``: join the run dirs of shards into one dataset dir.

The shards of one run (``-m shard=0,1,2,3 num_shards=4``) each hold every ``num_shards``-th image,
numbered as in the whole run. Merging checks that together they hold each image exactly once,
then links (or copies) their files into ``OUT_DIR`` and rebuilds ``metadata.jsonl``,
``preprocessed.npy`` and the predictions in image order: the result is the run dir the unsharded
run would have written, and resumes as one. ``OUT_DIR`` appears only once it is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ..errors import AilusionError
from ..stages import ImageRequest
from . import claim, files, manifest
from .sheets import write_contact_sheet

#: What a finished run dir holds beside its images (the record of its config comes first).
NEEDED = (claim.RUN_FILE, manifest.MANIFEST, "preprocessed_index.json", "predictions.json",
          "predictions.npy")


def _read_shard(path: Path) -> dict:
    """A finished run dir's config, manifest rows, array order and predictions."""
    missing = [name for name in NEEDED if not (path / name).is_file()]
    if missing:
        raise AilusionError(f"{path}: not a finished ailusion run dir (no {missing[0]})")
    rows, order = manifest.read_manifest(path), _read_json(path / "preprocessed_index.json")
    if sorted(order) != sorted(row["file_name"] for row in rows.values()):
        raise AilusionError(f"{path}: {manifest.MANIFEST} and preprocessed_index.json disagree")
    if rows and not (path / "preprocessed.npy").is_file():
        raise AilusionError(f"{path}: not a finished ailusion run dir (no preprocessed.npy)")
    return {"path": path, "config": _read_json(path / claim.RUN_FILE)["config"], "rows": rows,
            "order": order, "predictions": _read_json(path / "predictions.json")}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise AilusionError(f"{path}: not valid JSON ({exc})") from None


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
    num_shards = int(first.get("num_shards", 1))
    missing = set(range(num_shards)) - {int(s["config"].get("shard", 0)) for s in shards}
    if missing:
        raise AilusionError(
            f"shard {min(missing)} of {num_shards} is missing: pass the run dir of every shard"
        )
    total = max(owner, default=0)
    gaps = sorted(set(range(1, total + 1)) - set(owner))
    if gaps or not total:
        raise AilusionError(f"image {gaps[0] if gaps else 1} is in none of the shards")
    return total


def _place(source: Path, target: Path) -> None:
    if not source.is_file():
        raise AilusionError(f"{source}: missing, the shard is incomplete")
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
    shards = [_read_shard(path) for path in paths]
    total = _check_shards(shards)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~files._UMASK)  # mkdtemp makes it private; a dataset is not
    try:
        _write(tmp, shards, total)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write(out: Path, shards: list[dict], total: int) -> None:
    # 1. The images, and each one's rows of the arrays, at its index
    rows, predicted, arrays, logits = {}, {}, None, None
    for shard in (s for s in shards if s["order"]):
        path = shard["path"]
        by_name = {row["file_name"]: row for row in shard["rows"].values()}
        shard_predicted = {p["file_name"]: p for p in shard["predictions"]["images"]}
        shard_arrays = np.load(path / "preprocessed.npy", mmap_mode="r")
        shard_logits = np.load(path / "predictions.npy")
        if arrays is None:
            arrays = np.lib.format.open_memmap(
                out / "preprocessed.npy", mode="w+", dtype=shard_arrays.dtype,
                shape=(total, *shard_arrays.shape[1:]),
            )
            logits = np.zeros((total, shard_logits.shape[1]), dtype=shard_logits.dtype)
        for position, name in enumerate(shard["order"]):
            row = by_name[name]
            for key in ("file_name", "preprocessed_file_name"):
                if row.get(key):
                    _place(path / row[key], out / row[key])
            arrays[row["index"] - 1] = shard_arrays[position]
            logits[row["index"] - 1] = shard_logits[position]
            rows[row["index"]], predicted[row["index"]] = row, shard_predicted[name]
    arrays.flush()
    del arrays

    # 2. Predictions, manifest and contact sheet, in image order
    ordered = [rows[i] for i in sorted(rows)]
    np.save(out / "predictions.npy", logits)
    files.write_json(out / "preprocessed_index.json", [row["file_name"] for row in ordered])
    files.write_json(out / "predictions.json", {
        "labels": shards[0]["predictions"]["labels"],
        "images": [predicted[i] for i in sorted(predicted)],
    })
    manifest.write_manifest(out, rows)
    write_contact_sheet(out, ordered)

    # 3. The record of the unsharded run, so the merged dir resumes as that run's dir would
    config = OmegaConf.create({**shards[0]["config"], "shard": 0, "num_shards": 1})
    requests = [ImageRequest(r["index"], r.get("prompt"), r.get("negative_prompt"), r.get("seed"),
                             r.get("source")) for r in ordered]
    files.write_json(out / claim.RUN_FILE, claim.fingerprint(config, requests))
    hydra_config = shards[0]["path"] / ".hydra" / "config.yaml"
    if hydra_config.is_file():
        (out / ".hydra").mkdir()
        saved = OmegaConf.merge(OmegaConf.load(hydra_config), {"shard": 0, "num_shards": 1})
        OmegaConf.save(saved, out / ".hydra" / "config.yaml")
    _copy_run_files(out, [s["path"] for s in shards])


def _copy_run_files(out: Path, shard_dirs: list[Path]) -> None:
    """Link the run-wide files every shard holds (the model's weights, say): the shards share
    one config, so these are the same in each."""
    for source in sorted(shard_dirs[0].iterdir()):
        name = source.name
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
        out = merge(args.out_dir, args.shard_dirs)
    except AilusionError as exc:
        print(f"ailusion merge: error: {exc}", file=sys.stderr)
        return 1
    count = len(manifest.read_manifest(out))
    print(f"ailusion merge: {count} images from {len(args.shard_dirs)} shards → {out}")
    return 0
