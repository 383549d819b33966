"""The layer-wise plot: local and accumulated SQNR per integer node, in graph order (PNG, Agg)."""

from __future__ import annotations

import io
import math

import numpy as np

from onnx_hawq.validation.comparator import LayerResult


def _finite(values: list[float | None], cap: float) -> list[float]:
    """None -> nan (no bar); ±inf -> ±cap so identical tensors still show."""
    out = []
    for v in values:
        out.append(math.nan if v is None else (v if math.isfinite(v) else math.copysign(cap, v)))
    return out


def layers_png(layers: list[LayerResult], title: str = "layer-wise SQNR (float vs quantized)") -> bytes:
    """PNG bytes: horizontal bars of local and accumulated SQNR (dB), the worst layer in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = sorted(layers, key=lambda r: r.index)
    finite = [v for r in layers for v in (r.local_sqnr_db, r.metrics.sqnr_db) if v is not None and math.isfinite(v)]
    cap = max(finite, default=60.0) + 10.0
    names = [f"{r.label} ({r.bits})" for r in layers]
    local = _finite([r.local_sqnr_db for r in layers], cap)
    accum = _finite([r.metrics.sqnr_db for r in layers], cap)
    worst = int(np.argmin([r.rank_key for r in layers])) if layers else -1
    y = np.arange(len(layers))
    fig = Figure(figsize=(8, 1.2 + 0.32 * max(len(layers), 1)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = ["tab:red" if k == worst else "tab:blue" for k in range(len(layers))]
    ax.barh(y - 0.2, local, height=0.4, color=colors, label="local (node alone)")
    ax.barh(y + 0.2, accum, height=0.4, color="tab:gray", alpha=0.7, label="accumulated (full model)")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("SQNR (dB)")
    ax.set_title(title)
    fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
