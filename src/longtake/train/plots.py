"""Loss curves as PNG (matplotlib, Agg backend; written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from longtake.atomic import atomic_output


def smooth(values: list[float], alpha: float = 0.05) -> np.ndarray:
    """Exponential moving average (bias-corrected) of a loss series."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc = (1 - alpha) * acc + alpha * v
        out.append(acc / (1 - (1 - alpha) ** (i + 1)))
    return np.asarray(out)


def plot_losses(path: Path, series: dict[str, list[tuple[int, float]]], *, title: str, log_y: bool = True) -> None:
    """One line per named series of (step, value), raw (faint) and smoothed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, points in series.items():
        if not points:
            continue
        steps = [p[0] for p in points]
        vals = [p[1] for p in points]
        line, = ax.plot(steps, vals, alpha=0.25, linewidth=0.8)
        ax.plot(steps, smooth(vals), color=line.get_color(), label=name, linewidth=1.6)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
