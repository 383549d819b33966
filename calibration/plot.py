"""A PNG bar plot of per-layer sensitivity (matplotlib's Agg canvas, no pyplot state)."""

from __future__ import annotations

import io

import numpy as np

from onnx_hawq.calibration.sensitivity_file import Sensitivity


def _bars(ax, names, values, errors, title: str) -> None:
    x = np.arange(len(names))
    ax.bar(x, values, yerr=errors, capsize=2, color="tab:blue")
    if all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def sensitivity_png(sens: Sensitivity) -> bytes:
    """Sensitivity -> PNG bytes: average Hessian trace (with stderr) and/or top eigenvalue per layer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(sens.layers)
    panels = []
    if sens.method in ("trace", "both"):
        panels.append(([s.trace for s in sens.layers.values()], [s.stderr for s in sens.layers.values()],
                       "average Hessian trace (± stderr)"))
    if sens.method in ("eigen", "both"):
        panels.append(([s.eigenvalue for s in sens.layers.values()], None, "top Hessian eigenvalue"))
    if sens.method == "perturbation":
        low = min(min(s.delta_loss, key=lambda k: int(k[1:k.index("a")])) for s in sens.layers.values())
        panels.append(([max(s.delta_loss.get(low, 0.0), 0.0) for s in sens.layers.values()], None,
                       f"measured loss change, weights at {low} (others float)"))
    fig = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 3.2 * len(panels)), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (values, errors, title) in zip(fig.subplots(len(panels), 1, squeeze=False)[:, 0], panels):
        _bars(ax, names, values, errors, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
