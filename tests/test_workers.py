"""The worker side's per-image work: torch threads, the black check, contact-sheet thumbnails."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from fake_plugins import FAST, MeanModel, NoiseGenerator, plugin_manager
from PIL import Image

import ailusion
from ailusion import hookimpl
from ailusion.rundir.outputs import is_black
from ailusion.rundir.sheets import THUMB, _thumbnail

torch = pytest.importorskip("torch")


class ThreadCountingModel(MeanModel):
    """Model ``counting``: records torch's thread count on the thread that runs ``forward``."""

    seen: list = []

    def forward(self, batch):
        self.seen.append((threading.current_thread().name, torch.get_num_threads()))
        return super().forward(batch)


class CountingPlugin:
    @hookimpl
    def register_models(self):
        return {"counting": ThreadCountingModel}


def count_in_new_thread() -> int:
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_the_forward_pass_runs_on_one_torch_thread_and_leaves_the_others_theirs(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # as on a 2-core machine, whatever this one has
    try:
        pm = plugin_manager()
        pm.register(CountingPlugin())
        ThreadCountingModel.seen = []
        ailusion.run([*FAST, "prompts=[a,b,c]", "model.plugin=counting", "model.batch_size=1"],
                     run_dir=tmp_path / "run", pm=pm)
        assert ThreadCountingModel.seen == [("ailusion-consumer", 1)] * 3
        assert torch.get_num_threads() == 2  # the generating thread's
        assert count_in_new_thread() == 2  # what threads started later begin with
    finally:
        torch.set_num_threads(previous)


def test_a_forward_pass_set_to_one_thread_stays_so(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pm = plugin_manager()
        pm.register(CountingPlugin())
        ThreadCountingModel.seen = []
        ailusion.run([*FAST, "prompts=[a]", "model.plugin=counting"], run_dir=tmp_path / "run",
                     pm=pm)
        assert [count for _, count in ThreadCountingModel.seen] == [1]
        assert count_in_new_thread() == 1
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("mode, shape", [("RGB", (5, 7, 3)), ("L", (5, 7)), ("RGBA", (5, 7, 4))])
def test_is_black_means_every_band_of_every_pixel_is_zero(mode, shape):
    pixels = np.zeros(shape, np.uint8)
    assert is_black(Image.fromarray(pixels, mode))
    for band in range(shape[2] if len(shape) == 3 else 1):
        one = pixels.copy()
        one[(-1, -1, band) if len(shape) == 3 else (-1, -1)] = 1  # the last pixel, one band
        assert not is_black(Image.fromarray(one, mode)), (mode, band)


def photo(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1)
    return Image.fromarray((pixels + rng.integers(0, 20, pixels.shape)).clip(0, 255).astype(np.uint8))


def test_thumbnails_keep_the_aspect_ratio_and_stay_close_to_the_exact_filter():
    image = photo(512, 512)
    thumb = _thumbnail(image)
    assert thumb.size == (THUMB, THUMB)
    exact = np.asarray(image.resize((THUMB, THUMB), Image.BICUBIC), np.float32)
    assert np.abs(np.asarray(thumb, np.float32) - exact).mean() < 2.0
    assert _thumbnail(photo(300, 150)).size == (THUMB, THUMB // 2)
    assert _thumbnail(photo(150, 300)).size == (THUMB // 2, THUMB)


def test_small_thumbnails_are_enlarged_with_hard_edges():
    small = photo(32, 16)
    thumb = np.asarray(_thumbnail(small))
    assert thumb.shape == (48, 96, 3)
    np.testing.assert_array_equal(thumb, np.asarray(small).repeat(3, 0).repeat(3, 1))


class WaitingGenerator(NoiseGenerator):
    """Generator ``waiting``: after its first image, waits (up to 20 s) for that image's PNG to
    be on disk before making the others, and records whether it was."""

    seen_first_png: list = []

    def __init__(self, config, context):
        super().__init__(config, context)
        self.run_dir = context.run_dir

    def generate(self, requests):
        for n, generated in enumerate(super().generate(requests)):
            yield generated
            if n == 0:
                deadline = time.monotonic() + 20
                path = self.run_dir / "generated_image_1.png"
                while not path.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.seen_first_png.append(path.exists())


class WaitingPlugin:
    @hookimpl
    def register_generators(self):
        return {"waiting": WaitingGenerator}


def test_a_generated_image_is_written_before_its_batch_is_full(tmp_path):
    pm = plugin_manager()
    pm.register(WaitingPlugin())
    WaitingGenerator.seen_first_png = []
    result = ailusion.run([*FAST, "prompts=[a,b,c,d]", "generator.plugin=waiting",
                           "model.batch_size=4"], run_dir=tmp_path / "run", pm=pm)
    assert WaitingGenerator.seen_first_png == [True]
    assert result.summary["written"] == 4
    with Image.open(tmp_path / "run" / "generated_image_1.png") as image:
        assert image.text["prompt"] == "a"


def draw_sheets(tmp_path, count=9):
    from ailusion.rundir.sheets import ContactSheets

    saved = {}
    sheets = ContactSheets(tmp_path, count, lambda path, data: saved.update({path.name: data}),
                           per_sheet=4)
    for i in range(count):
        sheets.add({"index": i + 1, "prompt": f"prompt {i % 2}", "label": "3",
                    "probability": 0.25}, photo(64 + 8 * i, 64), photo(32, 32))
    return saved


def test_sheets_encoded_whole_by_fpng_or_line_by_line_by_zlib_are_the_same_picture(
        tmp_path, monkeypatch):
    import io

    from ailusion import png

    fast = draw_sheets(tmp_path)
    monkeypatch.setattr(png, "_fpng", {"error": "ImportError: none here"})
    streamed = draw_sheets(tmp_path)
    assert sorted(fast) == sorted(streamed) == ["contact_sheet.png", "contact_sheet_2.png",
                                                "contact_sheet_3.png"]
    for name in fast:
        assert b"fdEC" in fast[name] and b"fdEC" not in streamed[name]
        with Image.open(io.BytesIO(fast[name])) as a, Image.open(io.BytesIO(streamed[name])) as b:
            assert a.size == b.size
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class StalledWriter:
    """A writer whose encoding waits until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()

    def names(self, index):
        return {}

    def encode(self, sample):
        self.release.wait(10)


def test_the_encoders_take_two_batches_of_work_before_the_consumer_waits(tmp_path):
    from types import SimpleNamespace

    from ailusion.rundir.outputs import Outputs
    from ailusion.stages import ImageRequest

    writer, batch_size = StalledWriter(), 8
    outputs = Outputs(tmp_path, 64, None, SimpleNamespace(labels=["a"]), writer,
                      batch_size=batch_size)
    image = Image.new("RGB", (8, 8), "white")
    # each image is two encodes: two batches' worth of encodes is 2 × 2 × batch_size
    submitted = threading.Thread(target=lambda: [
        outputs.begin(ImageRequest(index=i, prompt="p", seed=i),
                      SimpleNamespace(image=image, info={}))
        for i in range(1, 4 * batch_size + 1)])
    submitted.start()
    submitted.join(2)
    stalled = submitted.is_alive()
    writer.release.set()
    submitted.join()
    outputs._pool.shutdown()
    assert not stalled


class OverlapModel(MeanModel):
    """Model ``overlap``: sets ``second_forward`` when its second batch's forward starts."""

    second_forward = threading.Event()
    calls = 0

    def forward(self, batch):
        OverlapModel.calls += 1
        if OverlapModel.calls == 2:
            OverlapModel.second_forward.set()
        return super().forward(batch)


class OverlapPlugin:
    @hookimpl
    def register_models(self):
        return {"overlap": OverlapModel}


def test_recording_a_batch_overlaps_the_forward_pass_of_the_next(tmp_path, monkeypatch):
    from ailusion.rundir import outputs

    add_batch, waited = outputs.Outputs.add_batch, []

    def recording(self, *args):  # the first batch's recording waits for the next forward pass
        if not waited:
            waited.append(OverlapModel.second_forward.wait(20))
        return add_batch(self, *args)

    monkeypatch.setattr(outputs.Outputs, "add_batch", recording)
    OverlapModel.second_forward.clear()
    OverlapModel.calls = 0
    pm = plugin_manager()
    pm.register(OverlapPlugin())
    result = ailusion.run([*FAST, "prompts=[a,b,c,d]", "model.plugin=overlap",
                           "model.batch_size=2"], run_dir=tmp_path / "run", pm=pm)
    assert waited == [True]
    assert result.summary["written"] == 4


class FailingAddWriterPlugin:
    """Format ``failing_add``: imagefolder whose third image cannot be recorded."""

    @hookimpl
    def register_writers(self):
        from ailusion.plugins.output.imagefolder import ImageFolderWriter

        class Failing(ImageFolderWriter):
            def add(self, sample):
                if sample.index == 3:
                    raise OSError(28, "No space left on device")
                super().add(sample)

        return {"failing_add": Failing}


def test_a_recorder_failure_stops_the_run_with_its_error_and_keeps_what_is_complete(tmp_path):
    pm = plugin_manager()
    pm.register(FailingAddWriterPlugin())
    with pytest.raises(OSError, match="No space left"):
        ailusion.run([*FAST, "prompts=[a,b,c,d,e,f]", "output.format=failing_add",
                      "model.batch_size=2"], run_dir=tmp_path / "run", pm=pm)
    run = tmp_path / "run"
    kept = [json.loads(line)["index"] for line in open(run / "metadata.jsonl")]
    assert kept[:2] == [1, 2] and 3 not in kept  # the failed one is made again by a rerun
    assert not (run / "predictions.json").exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_predictions_json_is_streamed_in_the_arrays_order_and_left_whole(tmp_path):
    result = ailusion.run([*FAST, "prompts=[a,b,c,d,e]", "model.batch_size=2"],
                          run_dir=tmp_path / "run", pm=plugin_manager())
    run = tmp_path / "run"
    predictions = json.loads((run / "predictions.json").read_text())
    order = json.loads((run / "preprocessed_index.json").read_text())
    assert predictions["labels"] == result.labels
    assert [image["file_name"] for image in predictions["images"]] == order
    rows = {row["file_name"]: row for row in map(json.loads, open(run / "metadata.jsonl"))}
    for position, image in enumerate(predictions["images"]):
        row = rows[image["file_name"]]
        assert image == {k: row[k] for k in ("file_name", "index", "prediction", "probability",
                                             "logits")}
        np.testing.assert_allclose(image["logits"], result.predictions[position], rtol=1e-6)


def test_a_manifest_appended_in_order_is_not_rewritten_and_a_resumed_one_is(
        tmp_path, monkeypatch):
    from ailusion.rundir import manifest

    rewrites, write_manifest = [], manifest.write_manifest
    monkeypatch.setattr(manifest, "write_manifest",
                        lambda run_dir, rows: rewrites.append(sorted(rows)) or
                        write_manifest(run_dir, rows))
    run = tmp_path / "run"
    ailusion.run([*FAST, "prompts=[a,b,c,d]"], run_dir=run, pm=plugin_manager())
    assert rewrites == [[]]  # only the start's (no rows kept)
    # a resumed run whose kept rows are not all before the new ones ends sorted, rewritten
    lines = (run / "metadata.jsonl").read_text().splitlines()
    (run / "metadata.jsonl").write_text("\n".join([lines[0], lines[2]]) + "\n")
    rewrites.clear()
    ailusion.run([*FAST, "prompts=[a,b,c,d]"], run_dir=run, pm=plugin_manager())
    assert rewrites == [[1, 3], [1, 2, 3, 4]]
    assert [json.loads(line)["index"] for line in open(run / "metadata.jsonl")] == [1, 2, 3, 4]


@pytest.mark.parametrize("prompt", ["a magical forest with glowing trees", "Qjgy, pq",
                                    "москва ночью", "", "x" * 300])
def test_a_prompt_line_drawn_once_and_pasted_is_the_same_pixels_as_drawn_in_place(prompt):
    from PIL import ImageDraw

    from ailusion.fonts import font_for
    from ailusion.rundir.sheets import _CELL_W, _PAD, _fit, _prompt_line

    at = (13, 57)
    drawn = Image.new("RGB", (_CELL_W + 40, 100), "white")
    font, text = font_for(prompt)
    ImageDraw.Draw(drawn).text(at, _fit(font, text, _CELL_W - 2 * _PAD), fill="gray", font=font)
    pasted = Image.new("RGB", drawn.size, "white")
    offset, line = _prompt_line(prompt)
    if line is not None:
        pasted.paste(line, (at[0] + offset[0], at[1] + offset[1]))
    np.testing.assert_array_equal(np.asarray(pasted), np.asarray(drawn))
    assert (line is None) == (not prompt)


def test_thumbnails_of_photographs_stay_within_three_grey_levels_of_the_exact_filter():
    datasets = pytest.importorskip("sklearn.datasets")
    photograph = Image.fromarray(datasets.load_sample_image("china.jpg")).crop((0, 0, 427, 427))
    for side in (512, 224):
        image = photograph.resize((side, side), Image.BICUBIC)
        exact = np.asarray(image.resize((THUMB, THUMB), Image.BICUBIC), np.float32)
        assert np.abs(np.asarray(_thumbnail(image), np.float32) - exact).mean() < 3.0
