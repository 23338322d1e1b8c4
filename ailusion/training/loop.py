"""The epochs: batches in an order drawn from ``train.seed`` and the epoch's number, a step of the
model's optimiser on each, validation, and a checkpoint after every finished epoch.

A killed run started again with the same config continues from its last finished epoch and ends
with the weights an uninterrupted run writes (for the same backend and thread count). A loss
that stops being finite ends the training at the last good epoch.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..rundir import files
from ..errors import AilusionError

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.jsonl"


@dataclass
class Fitted:
    history: list[dict]
    stopped: str | None = None  # why training ended before train.epochs


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """The mean softmax cross-entropy (``Flux.logitcrossentropy``) of (N, K) logits."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean()) if len(y) else math.nan


def predict(model, data, positions: np.ndarray, batch_size: int):
    """(logits, y) of the model on the images at ``positions``, a batch at a time."""
    logits, labels = [], []
    for start in range(0, len(positions), batch_size):
        x, y = data.batch(positions[start:start + batch_size])
        logits.append(np.asarray(model.forward(x), np.float32))
        labels.append(y)
    k = len(data.classes)
    return (np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
            np.concatenate(labels) if labels else np.zeros(0, np.int64))


def epoch_order(seed: int, epoch: int, positions: np.ndarray) -> np.ndarray:
    """The order of the training images in ``epoch``: the same for the same seed, however the
    run was interrupted."""
    return np.random.default_rng([seed, epoch]).permutation(positions)


def fit(model, data, train_pos, val_pos, plan, out_dir: Path, fingerprint: dict,
        progress: bool = True, on_epoch=None) -> Fitted:
    """Train ``model`` for ``plan.epochs`` epochs (fewer left when resuming)."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))  # as it is read back
    history = resume(model, out_dir, fingerprint)
    if history:  # drop the line of an epoch a killed run was writing
        _write_history(out_dir, history)
    good = model.train_state() if history else None
    for epoch in range(len(history) + 1, plan.epochs + 1):
        started = time.perf_counter()
        order = epoch_order(plan.seed, epoch, train_pos)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(total=len(order), desc=f"epoch {epoch}/{plan.epochs}", unit="img",
                   disable=not progress, file=sys.stderr, leave=False)
        with bar:
            for start in range(0, len(order), plan.batch_size):
                x, y = data.batch(order[start:start + plan.batch_size])
                loss, logits = model.train_step(x, y)
                if not math.isfinite(loss):
                    return _stop(model, history, good, epoch, start // plan.batch_size + 1)
                loss_sum += float(loss) * len(y)
                correct += int((np.argmax(logits, axis=1) == y).sum())
                seen += len(y)
                bar.update(len(y))
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
        val_logits, val_y = predict(model, data, val_pos, plan.batch_size)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "val_loss": cross_entropy(val_logits, val_y),
            "val_accuracy": float((val_logits.argmax(axis=1) == val_y).mean()),
            "seconds": round(time.perf_counter() - started, 3),
        }
        if not math.isfinite(row["val_loss"]):
            return _stop(model, history, good, epoch, None)
        history.append(row)
        good = model.train_state()
        save_checkpoint(out_dir, good, fingerprint, history)
        with open(out_dir / HISTORY, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if progress:
            print(f"epoch {epoch}/{plan.epochs}: loss {row['train_loss']:.4f}, accuracy "
                  f"{row['train_accuracy']:.3f}; validation loss {row['val_loss']:.4f}, "
                  f"accuracy {row['val_accuracy']:.3f}", file=sys.stderr)
        if on_epoch is not None:
            on_epoch(row)
    return Fitted(history)


def _stop(model, history, good, epoch: int, batch: int | None) -> Fitted:
    where = f"in epoch {epoch}" + (f", batch {batch}" if batch else " (validation)")
    if good is None:
        raise AilusionError(
            f"train.lr: the loss became NaN {where}, before any epoch finished; "
            "lower train.lr (or check the data for NaN)"
        )
    model.load_train_state(good)
    log.warning("the loss became NaN %s; stopped, keeping epoch %d (lower train.lr)",
                where, len(history))
    return Fitted(history, stopped=f"nan loss {where}")


def save_checkpoint(out_dir: Path, state: dict, fingerprint: dict, history: list) -> None:
    from safetensors.numpy import save

    metadata = {"fingerprint": json.dumps(fingerprint, sort_keys=True),
                "history": json.dumps(history)}
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    files.write_bytes(out_dir / CHECKPOINT, save(arrays, metadata))


def resume(model, out_dir: Path, fingerprint: dict) -> list[dict]:
    """The history of the epochs a previous run into ``out_dir`` finished (their weights and
    optimiser state loaded into ``model``), or [] for a fresh start."""
    from safetensors import SafetensorError, safe_open

    path = out_dir / CHECKPOINT
    if not path.exists():
        return []
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            previous = json.loads(meta["fingerprint"])
            history = json.loads(meta["history"])
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise AilusionError(f"{path}: not a readable training checkpoint ({exc}); "
                            "delete it to start again") from None
    if previous != fingerprint:
        key = next((k for k in sorted(set(previous) | set(fingerprint))
                    if previous.get(k) != fingerprint.get(k)), "config")
        raise AilusionError(
            f"{out_dir}: holds training of another config ({key} differs); resume it with the "
            "same config or pick another hydra.run.dir"
        )
    if not isinstance(history, list):
        raise AilusionError(f"{path}: not a readable training checkpoint; delete it")
    model.load_train_state(state)
    return history


def _write_history(out_dir: Path, history: list[dict]) -> None:
    with files.atomic_path(out_dir / HISTORY) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in history), encoding="utf-8")
