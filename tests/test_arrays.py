"""Reading rows of a run dir's preprocessed arrays (ailusion.rundir.arrays.Arrays)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ailusion.rundir import arrays, records


def _chunked(run, rows_per_chunk, chunks, dtype=np.float32, shape=(2, 3, 3)):
    """A run dir whose array chunks hold rows numbered 0, 1, 2, … (every value of row i is i)."""
    (run / arrays.CHUNKS).mkdir(parents=True)
    for k in range(chunks):
        first = k * rows_per_chunk
        block = np.arange(first, first + rows_per_chunk, dtype=dtype)[:, None, None, None]
        np.save(run / arrays.chunk_name(k), np.broadcast_to(block, (rows_per_chunk, *shape)))
    return arrays.Arrays(run)


def _single(run, n, dtype=np.float32, shape=(2, 3, 3)):
    run.mkdir(parents=True)
    block = np.arange(n, dtype=dtype)[:, None, None, None]
    np.save(run / arrays.SINGLE, np.broadcast_to(block, (n, *shape)).copy())
    return arrays.Arrays(run)


@pytest.mark.parametrize("layout", ["single", "chunks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_rows_come_back_in_the_order_asked_as_float32(tmp_path, layout, dtype):
    data = (_single(tmp_path / "r", 12, dtype) if layout == "single"
            else _chunked(tmp_path / "r", 4, 3, dtype))
    positions = [11, 0, 5, 5, 3, 8]
    x = data.read(positions)
    assert x.dtype == np.float32 and x.shape == (6, 2, 3, 3) and x.flags.c_contiguous
    assert x[:, 0, 0, 0].tolist() == positions and (x == x[:, :1, :1, :1]).all()
    assert data.read(positions, dtype).dtype == dtype
    assert data.read([]).shape == (0, 2, 3, 3)
    x[:] = -1  # the result is the caller's own: the file is untouched
    assert data.read([11])[0, 0, 0, 0] == 11


@pytest.mark.parametrize("layout", ["single", "chunks"])
@pytest.mark.parametrize("bad", [12, 40, -1])
def test_a_row_outside_the_arrays_is_an_index_error(tmp_path, layout, bad):
    data = (_single(tmp_path / "r", 12) if layout == "single" else _chunked(tmp_path / "r", 4, 3))
    with pytest.raises(IndexError, match=f"no array row {bad}"):
        data.read([0, bad])


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_many_chunks_keep_only_a_few_files_open(tmp_path):
    data = _chunked(tmp_path / "r", 2, arrays.MAPPED_FILES + 9)
    before = _open_fds()
    for start in range(0, len(data), 3):  # every chunk, over and over
        positions = np.arange(start, min(start + 3, len(data)))
        assert data.read(positions)[:, 0, 0, 0].tolist() == positions.tolist()
    assert _open_fds() - before <= arrays.MAPPED_FILES
    everything = data.read(np.arange(len(data))[::-1])
    assert everything[:, 0, 0, 0].tolist() == list(range(len(data)))[::-1]


def test_a_file_cut_short_while_read_is_refused_not_read_past_its_end(tmp_path):
    data = _single(tmp_path / "r", 12)
    assert data.read([11])[0, 0, 0, 0] == 11  # mapped now
    path = tmp_path / "r" / arrays.SINGLE
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(records.CorruptError, match=r"preprocessed.npy: corrupt \(truncated while read"):
        data.read([0])
    fresh = _single(tmp_path / "s", 12)  # cut short before its first read
    os.truncate(tmp_path / "s" / arrays.SINGLE, 200)
    with pytest.raises(records.CorruptError, match="truncated while read"):
        fresh.read([0])


def test_a_file_replaced_while_read_is_refused(tmp_path):
    data = _chunked(tmp_path / "r", 4, 2)
    assert data.read([1, 5])[:, 0, 0, 0].tolist() == [1, 5]
    np.save(tmp_path / "r" / arrays.chunk_name(1), np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(records.CorruptError, match=r"00001.npy: corrupt \(changed while read"):
        data.read([5])
    (tmp_path / "r" / arrays.chunk_name(0)).unlink()
    with pytest.raises(records.CorruptError, match=r"00000.npy: corrupt \(gone while read"):
        data.read([1])


def test_a_file_changed_before_its_first_read_is_refused(tmp_path):
    data = _single(tmp_path / "r", 12)  # checked, not read yet
    np.save(tmp_path / "r" / arrays.SINGLE, np.zeros((12, 4, 3, 3), np.float32))  # other rows
    with pytest.raises(records.CorruptError, match="changed while read"):
        data.read([0])
