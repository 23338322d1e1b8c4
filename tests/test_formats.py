"""Output formats: each one's files, read back by the ecosystem's readers with every column."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fake_plugins import FAST, plugin_manager
from PIL import Image

import ailusion
from ailusion.rundir import manifest, shards

PROMPTS = "prompts=[a fox,a boat,black,a lamp,a cake]"  # "black" is flagged


def run(run_dir, *overrides):
    return ailusion.run([*FAST, PROMPTS, "model.batch_size=2", *overrides], run_dir=run_dir,
                        pm=plugin_manager())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The same five images as imagefolder (the reference), webdataset and parquet."""
    root = tmp_path_factory.mktemp("formats")
    for fmt in ("imagefolder", "webdataset", "parquet"):
        run(root / fmt, f"output.format={fmt}", "output.shard_size=2")
    return root


def reference(made):
    """Per image number: (manifest row, generated pixels, preprocessed array, logits)."""
    base = made / "imagefolder"
    rows = manifest.read_manifest(base)
    arrays, logits = np.load(base / "preprocessed.npy"), np.load(base / "predictions.npy")
    order = json.loads((base / "preprocessed_index.json").read_text())
    out = {}
    for position, name in enumerate(order):
        row = next(r for r in rows.values() if r["file_name"] == name)
        with Image.open(base / name) as image:
            out[row["index"]] = (row, np.asarray(image), arrays[position], logits[position])
    return out


def fields(row):
    """A row's fields that are the same in every format (the file names are imagefolder's);
    a missing value is None in every one."""
    return {k: v for k, v in row.items() if k not in IMAGEFOLDER_ONLY}


#: Row keys of the imagefolder layout only: its files, their digests, the row's seal.
IMAGEFOLDER_ONLY = ("file_name", "preprocessed_file_name", "file_sha256",
                    "preprocessed_file_sha256", "row_sha256", "logits")


def test_shard_formats_write_shards_of_shard_size_with_stats(made):
    for fmt, suffix in (("webdataset", ".tar"), ("parquet", ".parquet")):
        names = sorted(p.name for p in (made / fmt).iterdir() if not p.name.startswith("."))
        assert names == ["00000" + suffix, "00000_stats.json", "00001" + suffix,
                         "00001_stats.json", "00002" + suffix, "00002_stats.json",
                         "contact_sheets", *(["dataset_info.json"] if fmt == "webdataset" else []),
                         "info.json"]
        stats = [json.loads((made / fmt / shards.stats_name(n)).read_text()) for n in range(3)]
        assert [s["count"] for s in stats] == [2, 2, 1]
        assert [s["flagged"] for s in stats] == [0, 1, 0]  # image 3 is black
        import hashlib

        for n, s in enumerate(stats):
            data = (made / fmt / shards.shard_name(n, suffix)).read_bytes()
            assert s["sha256"] == hashlib.sha256(data).hexdigest() and s["bytes"] == len(data)
            assert s["seconds"] >= 0 and s["format"] == fmt
        sheets = sorted(p.name for p in (made / fmt / "contact_sheets").iterdir())
        assert sheets == ["00000.png", "00001.png", "00002.png"]


def test_settings_the_same_for_every_image_are_written_once(made):
    for fmt in ("imagefolder", "webdataset", "parquet"):
        info = json.loads((made / fmt / "info.json").read_text())
        assert info["format"] == fmt and info["shard_size"] == 2 and info["planned"] == 5
        assert info["preprocessing"]["size"] in (8, [8, 8])
        assert info["preprocessed"] == {"shape": [3, 8, 8], "dtype": "float32"}
        assert info["labels"] == [str(i) for i in range(10)]
    assert all("preprocessing" not in row for row in manifest.read_manifest(made / "imagefolder").values())


def test_webdataset_loads_with_datasets_and_webdataset_with_every_column(made, tmp_path):
    datasets = pytest.importorskip("datasets")
    want = reference(made)
    features = datasets.DatasetInfo.from_directory(str(made / "webdataset")).features
    loaded = datasets.load_dataset("webdataset", data_files=str(made / "webdataset" / "*.tar"),
                                   split="train", cache_dir=str(tmp_path), features=features)
    assert loaded.num_rows == 5
    assert loaded["json"][0]["flagged"] is None and loaded["json"][2]["flagged"] == "black"
    for item in loaded:
        row, pixels, array, logits = want[int(item["__key__"])]
        np.testing.assert_array_equal(np.asarray(item["png"]), pixels)  # decoded as an image
        np.testing.assert_array_equal(np.asarray(item["preprocessed.npy"], np.float32), array)
        np.testing.assert_array_equal(np.asarray(item["logits.npy"], np.float32), logits)
        assert item["json"] == fields(row)

    import webdataset

    urls = str(made / "webdataset" / "{00000..00002}.tar")
    seen = []
    for item in webdataset.WebDataset(urls, shardshuffle=False).decode("rgb8"):
        row, pixels, array, logits = want[int(item["__key__"])]
        np.testing.assert_array_equal(item["png"], pixels)
        np.testing.assert_array_equal(item["preprocessed.npy"], array)
        np.testing.assert_array_equal(item["logits.npy"], logits)
        assert item["json"] == fields(row)
        seen.append(int(item["__key__"]))
    assert seen == [1, 2, 3, 4, 5]


def test_parquet_loads_with_datasets_with_the_image_decoded_and_every_column(made, tmp_path):
    datasets = pytest.importorskip("datasets")
    want = reference(made)
    loaded = datasets.load_dataset("parquet", data_files=str(made / "parquet" / "*.parquet"),
                                   split="train", cache_dir=str(tmp_path))
    assert isinstance(loaded.features["image"], datasets.Image)
    assert loaded["index"] == [1, 2, 3, 4, 5]
    for item in loaded:
        row, pixels, array, logits = want[item["index"]]
        assert isinstance(item["image"], Image.Image)
        np.testing.assert_array_equal(np.asarray(item["image"]), pixels)
        np.testing.assert_array_equal(np.asarray(item["preprocessed"], np.float32), array)
        np.testing.assert_array_equal(np.asarray(item["logits"], np.float32), logits)
        got = {k: v for k, v in item.items() if k not in ("image", "preprocessed", "logits")}
        assert got == fields(row)


def test_imagefolder_loads_with_datasets_with_every_column(made, tmp_path):
    datasets = pytest.importorskip("datasets")
    want = reference(made)
    loaded = datasets.load_dataset("imagefolder", data_dir=str(made / "imagefolder"),
                                   split="train", cache_dir=str(tmp_path))
    assert loaded.num_rows == 5
    for item in loaded:
        row, pixels, _, logits = want[item["index"]]
        np.testing.assert_array_equal(np.asarray(item["image"]), pixels)
        with Image.open(made / "imagefolder" / row["preprocessed_file_name"]) as view:
            np.testing.assert_array_equal(np.asarray(item["preprocessed"]), np.asarray(view))
        np.testing.assert_allclose(item["logits"], logits, rtol=1e-6)
        assert {k: v for k, v in item.items() if k not in ("image", "preprocessed", "logits")} \
            == {k: v for k, v in row.items() if k not in ("file_name", "preprocessed_file_name", "logits")}


def test_a_big_imagefolder_run_uses_subdirs_and_array_chunks_and_still_loads(tmp_path):
    datasets = pytest.importorskip("datasets")
    prompts = "prompts=[" + ",".join(f"p{i}" for i in range(7)) + "]"
    run(tmp_path / "big", prompts, "output.subdirs_above=5", "output.shard_size=3")
    run_dir = tmp_path / "big"
    rows = manifest.read_manifest(run_dir)
    assert rows[7]["file_name"] == "00000/generated_image_7.png"
    assert (run_dir / "00000" / "preprocessed_image_7.png").is_file()
    assert not (run_dir / "preprocessed.npy").exists()
    chunks = [np.load(run_dir / "preprocessed" / f"{n:05d}.npy") for n in range(3)]
    assert [len(c) for c in chunks] == [3, 3, 1]
    order = json.loads((run_dir / "preprocessed_index.json").read_text())
    assert order == [f"00000/generated_image_{i}.png" for i in range(1, 8)]
    small = tmp_path / "small"
    run(small, prompts)
    np.testing.assert_array_equal(np.concatenate(chunks), np.load(small / "preprocessed.npy"))
    loaded = datasets.load_dataset("imagefolder", data_dir=str(run_dir), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded["index"]) == list(range(1, 8))
    with Image.open(small / "generated_image_2.png") as image:
        item = next(i for i in loaded if i["index"] == 2)
        np.testing.assert_array_equal(np.asarray(item["image"]), np.asarray(image))


def test_subdirs_hold_at_most_a_thousand_files():
    names = {manifest.generated_name(i, True).split("/")[0] for i in range(1, 501)}
    assert names == {"00000"}
    assert manifest.generated_name(501, True) == "00001/generated_image_501.png"


def test_png_bytes_in_shards_carry_the_text_chunks(made):
    import tarfile

    with tarfile.open(made / "webdataset" / "00000.tar") as tar:
        data = tar.extractfile("00000002.png").read()
        assert tar.getmember("00000002.png").mtime == 0  # the same bytes run after run
    with Image.open(io.BytesIO(data)) as image:
        assert image.text["prompt"] == "a boat"


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_training_reads_shard_formats_as_it_reads_a_run_dir(fmt, tmp_path):
    from labelled_data import class_folder

    from ailusion.manager import get_plugin_manager
    from ailusion.training.data import open_reader

    folder = class_folder(tmp_path / "shapes", ("circle", "square"), 5)
    common = ["generator=folder", f"generator.path={folder}", "preprocessor.size=8",
              "model.backend=torch", "progress=false", "output.shard_size=3"]
    ailusion.run(common, run_dir=tmp_path / "imagefolder")
    ailusion.run([*common, f"output.format={fmt}"], run_dir=tmp_path / fmt)
    pm = get_plugin_manager()
    want, got = open_reader(tmp_path / "imagefolder", pm), open_reader(tmp_path / fmt, pm)
    assert type(got).__name__ != type(want).__name__
    assert got.classes == want.classes == ["circle", "square"]
    assert got.preprocessing == want.preprocessing and got.input_shape == want.input_shape
    order = np.argsort(got.numbers)
    np.testing.assert_array_equal(got.numbers[order], np.sort(want.numbers))
    positions = np.array([order[7], order[0], order[4]])
    x, y = got.batch(positions)
    wx, wy = want.batch(np.searchsorted(want.numbers, got.numbers[positions]))
    np.testing.assert_array_equal(x, wx)
    np.testing.assert_array_equal(y, wy)


BIG = ("output.subdirs_above=2", "output.shard_size=3")  # arrays in chunks of three rows


def test_merge_joins_the_shards_of_a_big_run_with_their_array_chunks(tmp_path):
    from ailusion.rundir import arrays
    from ailusion.rundir.merge import merge

    prompts = "prompts=[" + ",".join(f"p{i}" for i in range(7)) + "]"
    jobs = [tmp_path / f"job{k}" for k in range(2)]
    for k, job in enumerate(jobs):
        run(job, prompts, *BIG, f"shard={k}", "num_shards=2")
    # each job writes whole chunks, as numbered in the whole run, and the images they hold
    assert [arrays.array_files(job) for job in jobs] == [
        ["preprocessed/00000.npy", "preprocessed/00002.npy"], ["preprocessed/00001.npy"]]
    assert [sorted(manifest.read_manifest(job)) for job in jobs] == [[1, 2, 3, 7], [4, 5, 6]]
    merged = merge(tmp_path / "merged", jobs)
    for name, job in (("preprocessed/00001.npy", jobs[1]), ("preprocessed/00002.npy", jobs[0])):
        assert (merged / name).stat().st_ino == (job / name).stat().st_ino  # linked, not copied
    run(tmp_path / "whole", prompts)
    whole = np.load(tmp_path / "whole" / "preprocessed.npy")
    names = arrays.array_files(merged)
    assert names == ["preprocessed/00000.npy", "preprocessed/00001.npy", "preprocessed/00002.npy"]
    assert [len(np.load(merged / name)) for name in names] == [3, 3, 1]
    np.testing.assert_array_equal(arrays.Arrays(merged).read(range(7)), whole)
    record = json.loads((merged / ".ailusion.json").read_text())
    assert sorted(record["files_sha256"]) == sorted([*names, "predictions.npy"])


def test_training_reads_the_array_chunks_of_a_big_run_dir(tmp_path):
    from labelled_data import class_folder

    from ailusion.training.data import open_reader

    folder = class_folder(tmp_path / "shapes", ("circle", "square"), 4)
    common = ["generator=folder", f"generator.path={folder}", "preprocessor.size=8",
              "model.backend=torch", "progress=false"]
    ailusion.run(common, run_dir=tmp_path / "one")
    ailusion.run([*common, *BIG], run_dir=tmp_path / "chunked")
    assert (tmp_path / "chunked" / "preprocessed" / "00002.npy").is_file()
    want, got = open_reader(tmp_path / "one"), open_reader(tmp_path / "chunked")
    np.testing.assert_array_equal(got.numbers, want.numbers)
    positions = np.array([7, 0, 4, 3])
    np.testing.assert_array_equal(got.batch(positions)[0], want.batch(positions)[0])
    np.testing.assert_array_equal(got.batch(positions)[1], want.batch(positions)[1])


def test_missing_values_are_null_in_every_format_and_load_with_every_reader(tmp_path):
    """NaN logits leave ``prediction`` and ``probability`` without a value, an unlabelled run has
    no ``label``: null (or absent) alike in imagefolder, webdataset and parquet."""
    datasets = pytest.importorskip("datasets")
    import pyarrow.parquet as pq
    import webdataset

    for fmt in ("imagefolder", "webdataset", "parquet"):
        run(tmp_path / fmt, f"output.format={fmt}", "output.shard_size=2", "model.plugin=nan_logits")
    rows = manifest.read_manifest(tmp_path / "imagefolder")
    assert {(r["prediction"], r["probability"], r["flagged"]) for r in rows.values()} == \
        {(None, None, "nan"), (None, None, "black")}
    assert all("label" not in r and "label_id" not in r for r in rows.values())
    want = {i: fields(r) for i, r in rows.items()}

    wds_dir = tmp_path / "webdataset"
    for item in webdataset.WebDataset(str(wds_dir / "{00000..00002}.tar"), shardshuffle=False):
        assert json.loads(item["json"]) == want[int(item["__key__"])]  # null, not ""
    features = datasets.DatasetInfo.from_directory(str(wds_dir)).features
    loaded = datasets.load_dataset("webdataset", data_files=str(wds_dir / "*.tar"), split="train",
                                   cache_dir=str(tmp_path / "hf1"), features=features)
    assert {int(item["__key__"]): item["json"] for item in loaded} == want

    table = pq.read_table(sorted((tmp_path / "parquet").glob("*.parquet"))[0])
    assert table.column("prediction").null_count == table.num_rows
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "parquet" / "*.parquet"),
                                   split="train", cache_dir=str(tmp_path / "hf2"))
    assert {item["index"]: {k: v for k, v in item.items()
                            if k not in ("image", "preprocessed", "logits")}
            for item in loaded} == want
