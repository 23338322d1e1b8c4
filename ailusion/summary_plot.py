"""``summary.png``: a sweep's objective per job, and against each swept key."""

from __future__ import annotations

from pathlib import Path

MAX_KEYS = 8  # panels for swept keys; more keys are in summary.csv


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def plot_summary(rows: list[dict], swept: list[str], path: Path) -> None:
    """Draw the summary of ``rows`` (from :func:`ailusion.sweeps.collect`) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .rundir.files import atomic_path

    scored = any(r["objective_value"] is not None for r in rows)
    names = {r["objective"] for r in rows if r["objective"]}
    label = (names.pop() if len(names) == 1 else "objective") if scored else "seconds"
    value = (lambda r: r["objective_value"]) if scored else (lambda r: r["seconds"])
    keys = swept[:MAX_KEYS]
    panels = 1 + len(keys)
    cols = min(panels, 3)
    fig, axes = plt.subplots(
        (panels + cols - 1) // cols, cols, figsize=(4.5 * cols, 3.6 * ((panels + cols - 1) // cols)),
        constrained_layout=True, squeeze=False,
    )
    axes = axes.ravel()
    jobs = [str(r["job"]) for r in rows]
    values = [value(r) for r in rows]
    heights = [v if v is not None else 0 for v in values]
    best = max(range(len(rows)), key=lambda i: heights[i]) if scored and rows else None
    colors = ["tab:orange" if i == best else ("tab:blue" if v is not None else "lightgray")
              for i, v in enumerate(values)]
    axes[0].bar(range(len(jobs)), heights, color=colors)
    axes[0].set_xticks(range(len(jobs)), jobs)
    title = f"{label} per job" + ("" if scored else " (no objective: no training configured)")
    axes[0].set(title=title, xlabel="job", ylabel=label)
    for i, v in enumerate(values):
        if v is not None:
            axes[0].annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    for ax, key in zip(axes[1:], keys):
        points = [(r["values"].get(key), value(r)) for r in rows if value(r) is not None]
        xs = [_number(x) for x, _ in points]
        if points and all(x is not None for x in xs):
            pairs = sorted(zip(xs, [y for _, y in points]))
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], "o", alpha=0.8)
        else:  # categorical: one column per value, in the order first seen
            order = list(dict.fromkeys(str(x) for x, _ in points))
            ax.scatter([order.index(str(x)) for x, _ in points], [y for _, y in points])
            ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{label} against {key}", xlabel=key, ylabel=label)
    for ax in axes[:panels]:
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.axis("off")
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
