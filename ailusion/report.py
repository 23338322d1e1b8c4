"""What a run tells a person at the end, on the console: the predictions table and the summary."""

from __future__ import annotations

from pathlib import Path

MAX_ROWS = 20


def print_predictions(result, max_rows: int = MAX_ROWS) -> None:
    """Print one line per image: its file, top label and probability."""
    import numpy as np

    from .rundir.outputs import softmax

    probabilities = softmax(result.predictions.astype("float64"))
    print(f"{'image':<28} {'prediction':<12} {'probability':>11}")
    names = [Path(name).name for name in getattr(result, "names", None) or result.image_paths]
    for name, row in list(zip(names, probabilities))[:max_rows]:
        if not np.isfinite(row).all():  # NaN logits: flagged, no prediction
            print(f"{name:<28} {'-':<12} {'nan':>11}")
            continue
        top = int(row.argmax())
        print(f"{name:<28} {result.labels[top]:<12} {row[top]:>11.4f}")
    if len(names) > max_rows:
        print(f"… {len(names) - max_rows} more in predictions.json")


def print_summary(result) -> None:
    """Print what the run wrote, skipped and flagged, how long it took, and where."""
    s = result.summary
    print(
        f"ailusion: {s['written']} images written, {s['skipped']} skipped, "
        f"{s['flagged']} flagged in {s['seconds']:.1f}s → {s['run_dir']}"
    )
