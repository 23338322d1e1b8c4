"""Training throughput: the PyTorch twin trained through ailusion ÷ a plain PyTorch loop of the
same model (Conv → ReLU → flatten → Dense, Adam, cross-entropy) on the same arrays, side by side.

    python bench/train.py            # about three minutes on 2 cores
    python bench/train.py --quick    # a smoke test

ailusion's side is ``ailusion.training.loop.fit`` for one epoch: Python's batch order, the
reader's batch, the model plugin's ``train_step`` (numpy in, loss and logits out), the
validation pass over a few images and the checkpoint; once on the arrays in memory, once read
from a run dir's ``preprocessed.npy``. The plain loop indexes torch tensors and steps torch's Adam,
nothing else. They run in rounds, in turn, with the same torch thread count; a ratio is the
median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Arrays:
    """The reader interface over arrays in memory."""

    def __init__(self, x, y, classes):
        self.x, self.labels, self.classes = x, y, classes
        self.numbers = np.arange(1, len(y) + 1)
        self.input_shape = x.shape[1:]

    def batch(self, positions):
        return self.x[positions], self.labels[positions]


def write_run_dir(path: Path, x, y, classes) -> Path:
    """A labelled run dir holding ``x`` as its preprocessed arrays (only what the reader reads)."""
    path.mkdir(parents=True)
    np.save(path / "preprocessed.npy", x)
    names = [f"generated_image_{i}.png" for i in range(1, len(y) + 1)]
    (path / "preprocessed_index.json").write_text(json.dumps(names))
    rows = [{"file_name": n, "index": i + 1, "label": classes[y[i]], "label_id": int(y[i])}
            for i, n in enumerate(names)]
    (path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "classes.json").write_text(json.dumps({"classes": classes}))
    (path / ".ailusion.json").write_text(json.dumps({
        "requests_sha256": "0" * 64, "plan_sha256": "0" * 64,
        "config": {"preprocessor": {"plugin": "image", "size": list(x.shape[2:])}}}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    measure(args.quick, args.threads, report=True)


def measure(quick: bool = False, thread_counts=(1,), report: bool = False) -> dict:
    """``{threads: (plain, ailusion from memory, ailusion from a run dir, memory ÷ plain,
    run dir ÷ plain)}``: rates in images/s (each one's best epoch); ratios the median over the
    rounds of each round's ratio, each round running the three in turn in a rotating order (on a
    shared machine the rate moves by a quarter from minute to minute; a round's epochs are
    seconds apart). ``report`` prints the table as it goes."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from ailusion.plugins.flux_cnn import weights
    from ailusion.plugins.flux_cnn.torch_backend import TorchBackend
    from ailusion.training import loop
    from ailusion.training.data import RunDirReader
    from ailusion.training.settings import Plan

    n, size, batch, repeats = (512, 32, 32, 3) if quick else (2048, 32, 32, 9)
    classes = [str(i) for i in range(10)]
    rng = np.random.default_rng(0)
    x = rng.random((n, 3, size, size), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    arch = weights.Architecture(3, 8, "relu", 1, 0, None, 2, 10)
    init = weights.glorot_init(arch, (3, size, size), 0)
    work = Path(tempfile.mkdtemp(prefix="ailusion-bench-train-"))
    on_disk = RunDirReader(write_run_dir(work / "data", x, y, classes))
    in_memory = Arrays(x, y, classes)
    train_pos, val_pos = np.arange(n - 32), np.arange(n - 32, n)
    plan = Plan(epochs=1, batch_size=batch, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                weight_decay=0.0, seed=0, val_fraction=0.1, threads=None, objective="auto")

    class Twin:  # the model plugin's training methods, as FluxCNN hands them to loop.fit
        def __init__(self):
            from ailusion.stages import TrainSettings

            self.backend = TorchBackend(init, arch, "cpu")
            self.trainer = self.backend.trainer(TrainSettings(num_classes=10))
            self.forward = self.backend.forward
            self.train_step = self.trainer.step
            self.train_state = self.trainer.state

    def ailusion_epoch(data):
        def run():
            out = Path(tempfile.mkdtemp(dir=work))
            loop.fit(Twin(), data, train_pos, val_pos, plan, out, {}, progress=False)
        return run

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def plain_epoch():
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(),
                            nn.Linear(8 * (size - 2) ** 2, 10))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = np.random.default_rng([0, 1]).permutation(train_pos)
        for start in range(0, len(order), batch):
            index = torch.from_numpy(order[start:start + batch])
            loss = F.cross_entropy(net(xt[index]), yt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.inference_mode():
            net(xt[torch.from_numpy(val_pos)])

    say = print if report else (lambda *_: None)
    say(f"training throughput, {len(train_pos)} images of 3×{size}×{size} per epoch, "
        f"batch {batch}, {repeats} rounds (2 with more threads); rates: best epoch; ratios: "
        "the median over rounds of each round's ratio")
    say(f"{'threads':>7}  {'plain torch img/s':>17}  {'ailusion (memory)':>17}  "
        f"{'÷ plain':>7}  {'ailusion (run dir)':>18}  {'÷ plain':>7}")
    results, previous = {}, torch.get_num_threads()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        epochs = (plain_epoch, ailusion_epoch(in_memory), ailusion_epoch(on_disk))
        for epoch in epochs:  # warm up: torch's first calls, the file cache, the imports
            epoch()
        times = []  # per round: the seconds of each epoch, run in a rotating order
        for round_ in range(repeats if threads == 1 else min(repeats, 2)):  # 2 threads: 10× slower when busy
            took = [0.0] * 3
            for i in np.roll(np.arange(3), round_):
                started = time.perf_counter()
                epochs[i]()
                took[i] = time.perf_counter() - started
            times.append(took)
        times = np.array(times)
        rate = [len(train_pos) / t for t in times.min(axis=0)]
        ratio = [float(np.median(times[:, 0] / times[:, i])) for i in (1, 2)]
        results[threads] = (*rate, *ratio)
        say(f"{threads:>7}  {rate[0]:>17.0f}  {rate[1]:>17.0f}  {ratio[0]:>7.3f}  "
            f"{rate[2]:>18.0f}  {ratio[1]:>7.3f}")
    torch.set_num_threads(previous)
    return results


if __name__ == "__main__":
    main()
